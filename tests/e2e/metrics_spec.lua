-- End to end: an app with metrics_port serves /metrics, /health and /ready
-- from its own process while its pipeline runs, scraped here with curl:
-- the counters say what was processed (consumed per partition, produced,
-- errors, user function calls, no lag left, checkpoints, the state store,
-- the source), the endpoints follow the loop (a stuck loop turns /health to
-- 503, and back), the port is released at the end, and a port that cannot
-- be had is a clear start-up error. Waits are on progress.
local H = require("helper")
local qhost = require("qhost")

-- A port nothing listens on: one the system picks, given back at once.
local function free_port()
  local server = assert(require("qhost.metrics").start(0))
  local port = server:port()
  server:close()
  return port
end

-- curl's status (0 when nothing answered) and body.
local function curl(port, path)
  local out = H.exec(string.format("curl -s -m 10 -w '\\n%%{http_code}' http://127.0.0.1:%d%s", port, path))
  local body, code = out:match("^(.*)\n(%d+)%s*$")
  return tonumber(code) or 0, body or out
end

-- The samples of a Prometheus text: { { name =, labels = {}, value = } }.
local function parse(text)
  local list = {}
  for line in text:gmatch("[^\n]+") do
    if not line:match("^#") then
      local name, labels, value = line:match("^([%w_:]+){(.*)} (%S+)$")
      if not name then
        name, value = line:match("^([%w_:]+) (%S+)$")
        labels = ""
      end
      local l = {}
      for k, v in labels:gmatch('([%w_]+)="(.-)"') do l[k] = v end
      list[#list + 1] = { name = name, labels = l, value = tonumber(value) }
    end
  end
  return list
end

-- The sum of the samples of `name` whose labels include `match`, and how many.
local function sum(samples, name, match)
  local total, n = 0, 0
  for _, s in ipairs(samples) do
    local ok = s.name == name
    for k, v in pairs(match or {}) do ok = ok and s.labels[k] == v end
    if ok then total, n = total + s.value, n + 1 end
  end
  return total, n
end

local function by_function(samples, name, kind)
  local out = {}
  for _, s in ipairs(samples) do
    if s.name == name and s.labels["function"]:match("^" .. kind .. " app%.lua:%d+$") then
      out[#out + 1] = s.value
    end
  end
  table.sort(out)
  return out
end

describe("metrics_port (" .. H.mode .. " broker)", function()
  it("serves counters that match what the pipeline processed, and the probes, while it runs", function()
    local dir = H.tmpdir()
    local input, output, group, src = H.unique("m-in"), H.unique("m-out"), H.unique("m-group"), H.unique("m-src")
    -- 1,000 messages over 10 keys and 2 partitions; the even half passes the
    -- filter and is counted per key in the state store; one in 100 raises
    -- (skipped by on_processing_error); 490 reach the output topic.
    H.write(dir .. "/app.lua", string.format([[
local qhost = require("qhost")
local N = 1000
local Numbers = qhost.sources.Source:extend("Numbers")
function Numbers:run()
  for i = 0, N - 1 do
    if not self.running then return end
    local msg = self:serialize{ key = "k" .. (i %% 10), value = { n = i } }
    self:produce{ key = msg.key, value = msg.value }
  end
end
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest", commit_interval = 0.5,
  metrics_port = tonumber(arg[1]), on_processing_error = function() return true end }
local input = app:topic(%q, { config = qhost.TopicConfig{ num_partitions = 2, replication_factor = 1 } })
local sdf = app:dataframe{ topic = input, source = Numbers{ name = %q } }
sdf = sdf:filter(function(v) return v.n %% 2 == 0 end)
sdf = sdf:apply(function(v, state)
  local c = (state:get("count") or 0) + 1
  state:set("count", c)
  return v
end, { stateful = true })
sdf = sdf:apply(function(v) if v.n %% 100 == 0 then error("boom") end return v end)
sdf:to_topic(app:topic(%q))
app:run()
]], group, input, src, output))
    local port = free_port()
    local p = H.start_guarded(finally, dir, "app.lua", { args = { tostring(port) } })
    local samples, last = {}, ""
    local done = H.eventually(function()
      local code, body = curl(port, "/metrics")
      if code ~= 200 then return false end
      last, samples = body, parse(body)
      return sum(samples, "qhost_messages_consumed_total", { topic = input }) == 1000
        and sum(samples, "qhost_messages_produced_total", { topic = output }) == 490
        and sum(samples, "qhost_consumer_lag", { topic = input }) == 0
        and sum(samples, "qhost_checkpoint_duration_seconds_count") >= 1
        and select(2, sum(samples, "qhost_state_store_keys", { topic = input })) > 0
        and sum(samples, "qhost_sources_alive") == 0
    end, 120)
    assert.is_true(done, "last scrape:\n" .. last .. "\nstderr:\n" .. p:stderr())

    local per_partition = {}
    for _, s in ipairs(samples) do
      if s.name == "qhost_messages_consumed_total" and s.labels.topic == input then
        per_partition[tonumber(s.labels.partition)] = s.value
      end
    end
    assert.is_true((per_partition[0] or 0) > 0 and (per_partition[1] or 0) > 0)
    assert.are.equal(2, select(2, sum(samples, "qhost_consumer_lag", { topic = input })))
    assert.are.equal(2, sum(samples, "qhost_partitions_assigned"))
    assert.are.equal(10, sum(samples, "qhost_processing_errors_total", { kind = "processing" }))
    assert.are.equal(0, sum(samples, "qhost_processing_errors_total", { kind = "consumer" }))
    assert.are.same({ 1000 }, by_function(samples, "qhost_user_function_calls_total", "filter"))
    assert.are.same({ 500, 500 }, by_function(samples, "qhost_user_function_calls_total", "apply"))
    assert.are.equal(2, #by_function(samples, "qhost_user_function_seconds_total", "apply"))
    assert.are.equal(0, sum(samples, "qhost_source_up", { source = src }))
    assert.are.equal(0, sum(samples, "qhost_source_failures_total", { source = src }))
    assert.are.equal(0, sum(samples, "qhost_source_restarts_total", { source = src }))
    assert.are.equal(1, sum(samples, "qhost_build_info", { version = qhost.version }))
    assert.are.equal(1, sum(samples, "qhost_ready"))
    assert.is_true(sum(samples, "process_cpu_seconds_total") > 0)
    local checkpoints = sum(samples, "qhost_checkpoint_duration_seconds_count")
    assert.are.equal(checkpoints, sum(samples, "qhost_checkpoint_duration_seconds_bucket", { le = "+Inf" }))

    local code, body = curl(port, "/health")
    assert.are.same({ 200, "ok\n" }, { code, body })
    code, body = curl(port, "/ready")
    assert.are.same({ 200, "ready\n" }, { code, body })
    assert.are.equal(404, (curl(port, "/nothing")))

    p:signal("TERM")
    local r = p:wait(60)
    assert.is_truthy(r, "the app did not stop")
    assert.are.equal(0, r.code, r.stderr)
    -- The port is given back.
    assert.are.equal(0, (curl(port, "/health")))
    os.execute("rm -rf " .. H.quote(dir))
  end)

  it("answers /health with 503 while the loop is stuck in a user function, and 200 once it goes on", function()
    local dir = H.tmpdir()
    local input = H.unique("m-stuck")
    H.write(dir .. "/app.lua", string.format([[
local qhost = require("qhost")
local Three = qhost.sources.Source:extend("Three")
function Three:run()
  for i = 1, 3 do self:produce{ key = tostring(i), value = '{"n":' .. i .. '}' } end
end
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest", metrics_port = tonumber(arg[1]) }
local sdf = app:dataframe{ topic = app:topic(%q), source = Three{ name = %q } }
sdf:update(function()
  -- Holds the loop while the file "block" exists.
  local f = io.open("block")
  while f do f:close(); qhost.sleep(0.05); f = io.open("block") end
end)
app:run()
]], H.unique("m-stuck-group"), input, H.unique("m-stuck-src")))
    H.write(dir .. "/block", "")
    local port = free_port()
    local p = H.start_guarded(finally, dir, "app.lua", { args = { tostring(port) },
      env = { QHOST_HEALTH_TIMEOUT = "1" } })
    local body
    assert.is_true(H.eventually(function()
      local code
      code, body = curl(port, "/health")
      return code == 503
    end, 90), p:stderr())
    assert.truthy(body:find("^not alive: the processing loop's last heartbeat was [%d.]+ s ago\n$"), body)
    -- The other endpoints answer all the same: they never wait for the loop.
    assert.are.equal(200, (curl(port, "/metrics")))
    os.remove(dir .. "/block")
    assert.is_true(H.eventually(function() return curl(port, "/health") == 200 end, 30), p:stderr())
    p:signal("TERM")
    local r = p:wait(60)
    assert.are.equal(0, r and r.code, r and r.stderr)
    os.execute("rm -rf " .. H.quote(dir))
  end)

  it("fails the start with a clear error when the port is in use or not a port", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, metrics_port = tonumber(arg[1]) }
app:dataframe(app:topic(%q)):print()
app:run()
]], H.unique("m-bad-group"), H.unique("m-bad")))
    local holder = assert(require("qhost.metrics").start(0))
    local port = holder:port()
    local r = H.run(dir, "app.lua", { args = { tostring(port) }, timeout = 60 })
    holder:close()
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find(string.format("metrics_port %d: cannot listen on port %d: Address already in use",
      port, port), 1, true), r.stderr)

    r = H.run(dir, "app.lua", { args = { "70000" }, timeout = 60 })
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("app.lua:2: Application: metrics_port must be a port number (1-65535), got 70000",
      1, true), r.stderr)

    H.write(dir .. "/env.lua", "local qhost = require('qhost')\nqhost.Application{}\n")
    r = H.run(dir, "env.lua", { env = { QHOST_METRICS_PORT = "nine" }, timeout = 60 })
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find('env.lua:2: QHOST_METRICS_PORT must be a port number (1-65535), got "nine"', 1,
      true), r.stderr)
    os.execute("rm -rf " .. H.quote(dir))
  end)
end)
