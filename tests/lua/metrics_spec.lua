-- qhost.runtime.metrics and Application{ metrics_port }: the option's
-- checks, the Prometheus text rendered from the counters and from fakes of
-- what it reads (consumer positions, producer deliveries, state sizes,
-- sources), the batch counting over real qh_msg structs, the sampled timing
-- of user functions, the checkpoint histogram, and a real server answering
-- curl with what tick() published. End to end: tests/e2e/metrics_spec.lua.
local ffi = require("ffi")
require("qhost.kafka.ffi")   -- the qh_msg struct
local qhost = require("qhost")
local metrics = require("qhost.runtime.metrics")

local function lines_of(text)
  local set = {}
  for line in text:gmatch("[^\n]+") do set[line] = true end
  return set
end

local function curl(port, path)
  local p = io.popen(string.format("curl -s -m 10 -w '\\n%%{http_code}' http://127.0.0.1:%d%s", port, path))
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)\n(%d+)$")
  return tonumber(code), body
end

describe("Application{ metrics_port }", function()
  it("is off by default and takes a port number", function()
    if os.getenv("QHOST_METRICS_PORT") then return end
    assert.is_false(qhost.Application{}.metrics_port)
    assert.are.equal(9100, qhost.Application{ metrics_port = 9100 }.metrics_port)
  end)

  it("refuses what is not a port, at the user's line", function()
    for _, bad in ipairs({ 0, 65536, -1 }) do
      local ok, err = pcall(qhost.Application, { metrics_port = bad })
      assert.is_false(ok)
      assert.truthy(err:find("metrics_spec.lua:%d+: Application: metrics_port must be a port number"), err)
      assert.truthy(err:find("(1-65535), got " .. tostring(bad), 1, true), err)
    end
    assert.has_error(function() qhost.Application{ metrics_port = 91.5 } end,
      "Application: metrics_port must be an integer, got 91.5")
    assert.has_error(function() qhost.Application{ metrics_port = "9100" } end,
      'Application: metrics_port must be an integer, got the string "9100"')
  end)
end)

describe("metrics:render", function()
  it("writes every family from the counters and what it reads, in the text format", function()
    local m = metrics.new()
    m.started_at = 1700000000.25
    m:attach{
      consumer = { positions = function()
        return { { topic = "in", partition = 0, offset = 40, high = 50 },
                 { topic = "in", partition = 1, offset = -1001, high = 7 },   -- nothing consumed: from the start
                 { topic = "in", partition = 2, offset = -1001 } }            -- no fetch yet: no lag
      end },
      producer = function()
        return { delivered = function() return { { topic = "out", partition = 1, count = 12 } } end }
      end,
      state = { sizes = function()
        return { { topic = "in", store = "default", partition = 0, keys = 3, bytes = 4096 } }
      end },
      sources = { report = function()
        return { { name = 'my "csv"', alive = true, failures = 0, restarts = 0 },
                 { name = "other", alive = false, failures = 1, restarts = 0 } }
      end },
    }
    m:assigning({ { topic = "in", partition = 1, offset = 2 } })
    m.consumed = { ["in"] = { [0] = 40, [1] = 5 } }
    m:error("processing")
    m:error("processing")
    m:checkpointed(0.003)
    m:checkpointed(2)
    m:set_ready(true)
    local text = m:render()
    local got = lines_of(text)
    for _, want in ipairs({
      "# TYPE qhost_build_info gauge",
      string.format('qhost_build_info{version="%s",luajit="%s",librdkafka="%s"} 1', qhost.version, jit.version,
        require("qhost.kafka").librdkafka_version),
      "qhost_start_time_seconds 1700000000.250",
      "# TYPE qhost_messages_consumed_total counter",
      'qhost_messages_consumed_total{topic="in",partition="0"} 40',
      'qhost_messages_consumed_total{topic="in",partition="1"} 5',
      'qhost_messages_produced_total{topic="out",partition="1"} 12',
      'qhost_processing_errors_total{kind="processing"} 2',
      'qhost_processing_errors_total{kind="consumer"} 0',
      "qhost_partitions_assigned 3",
      'qhost_consumer_lag{topic="in",partition="0"} 10',
      'qhost_consumer_lag{topic="in",partition="1"} 5',
      "# TYPE qhost_checkpoint_duration_seconds histogram",
      'qhost_checkpoint_duration_seconds_bucket{le="0.001"} 0',
      'qhost_checkpoint_duration_seconds_bucket{le="0.005"} 1',
      'qhost_checkpoint_duration_seconds_bucket{le="1"} 1',
      'qhost_checkpoint_duration_seconds_bucket{le="2.5"} 2',
      'qhost_checkpoint_duration_seconds_bucket{le="+Inf"} 2',
      "qhost_checkpoint_duration_seconds_sum 2.003",
      "qhost_checkpoint_duration_seconds_count 2",
      "qhost_ready 1",
      "qhost_sources_alive 1",
      'qhost_source_up{source="my \\"csv\\""} 1',
      'qhost_source_up{source="other"} 0',
      'qhost_source_failures_total{source="other"} 1',
      'qhost_source_restarts_total{source="other"} 0',
      'qhost_state_store_keys{topic="in",store="default",partition="0"} 3',
      'qhost_state_store_bytes{topic="in",store="default",partition="0"} 4096',
    }) do
      assert.is_true(got[want] == true, "missing line: " .. want .. "\n" .. text)
    end
    assert.is_nil(text:find('partition="2"} ', 1, true))
    -- Every line is a comment or "name{labels} value".
    for line in text:gmatch("[^\n]+") do
      assert.truthy(line:match("^# HELP ") or line:match("^# TYPE ") or line:match("^[%a_:][%w_:]*{?.-}? [%d%.%-e+InfNa]+$"), line)
    end
    assert.are.equal("\n", text:sub(-1))
  end)

  it("leaves out the state and source families of an app without them", function()
    local text = metrics.new():render()
    assert.is_nil(text:find("qhost_state_store", 1, true))
    assert.is_nil(text:find("qhost_source", 1, true))
    assert.is_nil(text:find("qhost_user_function", 1, true))
    assert.truthy(text:find("\nqhost_ready 0\n", 1, true))
  end)

  it("escapes label values", function()
    local m = metrics.new()
    m.consumed = { ['a\\b"c\nd'] = { [0] = 1 } }
    assert.truthy(m:render():find('qhost_messages_consumed_total{topic="a\\\\b\\"c\\nd",partition="0"} 1', 1, true))
  end)
end)

describe("metrics:count_batch", function()
  it("counts the data messages of a polled batch per topic and partition, not error events", function()
    local a, b = ffi.new("char[2]", "a"), ffi.new("char[2]", "b")
    local msgs = ffi.new("qh_msg[5]")
    local spec = { { a, 0, 0 }, { a, 1, 0 }, { b, 0, 0 }, { a, 1, 0 }, { a, 0, -191 } }
    for i, s in ipairs(spec) do
      msgs[i - 1].topic, msgs[i - 1].partition, msgs[i - 1].err = s[1], s[2], s[3]
    end
    local m = metrics.new()
    m:count_batch(msgs, 5)
    m:count_batch(msgs, 2)
    assert.are.same({ a = { [0] = 2, [1] = 3 }, b = { [0] = 1 } }, m.consumed)
  end)
end)

describe("metrics:timed", function()
  it("stands in for a node, passing its arguments and its result through, and counts every call", function()
    local m = metrics.new()
    local node = { kind = "apply", where = "app.lua:3", metadata = true,
      fn = function(v, k, t, h, s) return v + #k + t + #h + s, "second" end }
    local timed = m:timed(node)
    assert.are.equal(true, timed.metadata)
    assert.are.equal("apply", timed.kind)
    for _ = 1, 40 do
      assert.are.same({ 10 }, { timed.fn(1, "ab", 3, { 1, 2 }, 2) })
    end
    local slot = m.functions["apply app.lua:3"]
    assert.are.equal(40, slot.calls)
    -- Calls 1, 17 and 33 were timed (one result each, the first only).
    assert.is_true(slot.seconds >= 0)
    local text = m:render()
    assert.truthy(text:find('qhost_user_function_calls_total{function="apply app.lua:3"} 40', 1, true), text)
    assert.truthy(text:find('qhost_user_function_seconds_total{function="apply app.lua:3"} ', 1, true), text)
  end)

  it("lets an error through, the call counted", function()
    local m = metrics.new()
    local timed = m:timed({ kind = "filter", where = "x.lua:1", fn = function() error("boom", 0) end })
    assert.has_error(function() timed.fn(1) end, "boom")   -- call 1: timed
    assert.has_error(function() timed.fn(1) end, "boom")   -- call 2: not
    assert.are.equal(2, m.functions["filter x.lua:1"].calls)
  end)

  it("shares one slot between operations written on one line", function()
    local m = metrics.new()
    m:timed({ kind = "apply", where = "a.lua:1", fn = print })
    m:timed({ kind = "apply", where = "a.lua:1", fn = print })
    assert.are.same({ "apply a.lua:1" }, m.function_order)
  end)
end)

describe("metrics.start", function()
  it("serves what tick publishes, the heartbeat and readiness, until closed", function()
    local m = assert(metrics.start(0))
    local port = m.server:port()
    local code, body = curl(port, "/ready")
    assert.are.equal(503, code)
    assert.are.equal("not ready: starting: connecting to the broker\n", body)
    assert.are.equal(200, (curl(port, "/health")))
    m.consumed = { t = { [0] = 7 } }
    m:tick()
    code, body = curl(port, "/metrics")
    assert.are.equal(200, code)
    assert.truthy(body:find('\nqhost_messages_consumed_total{topic="t",partition="0"} 7\n', 1, true), body)
    m:set_ready(true)
    assert.are.equal(200, (curl(port, "/ready")))
    m:beat(0)
    assert.are.equal(503, (curl(port, "/health")))
    m:close()
    m:close()
    assert.are.equal(0, (curl(port, "/health")))   -- curl's 000: nothing listens
  end)

  it("says why it cannot have a port", function()
    local m = assert(metrics.start(0))
    local port = m.server:port()
    local again, err = metrics.start(port)
    assert.is_nil(again)
    assert.are.equal(string.format("cannot listen on port %d: Address already in use", port), err)
    m:close()
  end)
end)
