local kafka = require("qhost.kafka")
local host = require("qhost.host")

describe("qhost.kafka argument checks", function()
  it("refuses an embedded broker without brokers and topics without partitions", function()
    assert.has_error(function() kafka.mock_cluster(0) end)
    local mock = assert(kafka.mock_cluster(1))
    assert.has_error(function() mock:create_topic("t", 0) end)
    assert.has_error(function() mock:create_topic("t", -1) end)
    assert.is_true(mock:create_topic("t", 2))
    assert.is_true(mock:create_topic("t", 2))   -- again: already there is fine
    mock:close()
  end)
  it("treats a huge flush timeout as 'wait', returning at once when nothing is queued", function()
    local p = assert(kafka.producer({ ["bootstrap.servers"] = "127.0.0.1:1" }))
    assert.are.equal(0, p:flush(1e12))
    p:close()
  end)
  it("names a bad property", function()
    local p, err = kafka.producer({ ["no.such.property"] = "1" })
    assert.is_nil(p)
    assert.truthy(err:find("no.such.property", 1, true))
  end)
  -- In a child process (the stop it gets must not reach the other specs):
  -- NaN, negative and zero durations return at once and return nothing; a
  -- huge one (past time_t's range unless clamped) really sleeps, until the
  -- stop signal interrupts it.
  it("sleep returns at once for NaN and negative durations, and sleeps a huge one until a stop", function()
    local H = require("helper")
    local dir = H.tmpdir()
    H.write(dir .. "/sleep.lua", [[
local host = require("qhost.host")
local counts = {}
for _, s in ipairs({ 0 / 0, -1, -1 / 0, 0 }) do counts[#counts + 1] = select("#", host.sleep(s)) end
io.stdout:write("quick ", table.concat(counts, ","), "\n")
io.stdout:flush()
host.sleep(1e300)
io.stdout:write("woke ", (host.stop_requested()), "\n")
]])
    local p = H.start(dir, "sleep.lua")
    -- Signalled once it sleeps: "quick" printed and its state S (asleep).
    local function asleep()
      local stat = H.read("/proc/" .. tostring(p.pid) .. "/stat") or ""
      return p:stdout():find("quick", 1, true) ~= nil and stat:match("^%d+ %b() (%a)") == "S"
    end
    local ok = H.eventually(asleep, 30)
    p:signal("TERM")
    local r = p:wait(30)
    assert.is_true(ok, "never asleep: " .. p:stdout() .. p:stderr())
    assert.are.same({ code = 0, stdout = "quick 0,0,0,0\nwoke 1\n" }, r and { code = r.code, stdout = r.stdout })
  end)
end)

describe("qhost.kafka's log", function()
  -- In a child process: the prefix and level it sets are process-wide.
  -- librdkafka's lines come from its own threads, through the host's C
  -- logger: the same lines as the Lua logger's, with its prefix and level.
  it("writes librdkafka's lines as the Lua logger writes its own, at the Lua logger's level", function()
    local H = require("helper")
    local dir = H.tmpdir()
    H.write(dir .. "/log.lua", [[
local log = require("qhost.log")
local kafka = require("qhost.kafka")
local host = require("qhost.host")
log.set_name("source 'orders'")
log.warning("from Lua")
-- Nobody at the address: librdkafka logs the failed connection at ERROR.
local function unreachable()
  local p = assert(kafka.producer({ ["bootstrap.servers"] = "127.0.0.1:1", ["log_level"] = 3,
                                    ["reconnect.backoff.ms"] = 10 }))
  local deadline = host.monotonic() + 30
  while not p:take_errors() and host.monotonic() < deadline do p:flush(0.05) end
  p:close()
end
unreachable()
log.set_level("CRITICAL")
unreachable()
io.stdout:write("done\n")
]])
    local out = H.exec(string.format("cd %s && timeout -s KILL 60 %s lua log.lua 2>stderr.txt; echo rc=$?",
      H.quote(dir), H.quote(H.qhost)))
    local stderr = H.read(dir .. "/stderr.txt") or ""
    assert.are.equal("done\nrc=0\n", out, stderr)
    local levels, first, second = {}, 0, 0
    for line in stderr:gmatch("[^\n]+") do
      local level, pid, text = line:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d (%u+) source 'orders'%[(%d+)%]: (.*)$")
      assert.truthy(level, "not in the logger's format: " .. line)
      levels[level] = true
      if text:find("^librdkafka rdkafka#producer%-1 ") then first = first + 1 end
      if text:find("^librdkafka rdkafka#producer%-2 ") then second = second + 1 end
    end
    assert.is_true(levels.WARNING and levels.ERROR, stderr)
    assert.is_true(first > 0, stderr)
    assert.are.equal(0, second, stderr)   -- below CRITICAL: dropped
  end)
end)
