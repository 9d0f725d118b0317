-- The per-message loop runs compiled: LuaJIT records traces rooted in
-- process_batch's process_range (the consume -> pipeline -> offsets loop).
local H = require("helper")

describe("JIT #" .. H.mode, function()
  it("traces the pipeline's per-message loop", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local jutil = require("jit.util")
-- Traces that start in process_batch.lua: which function they start in, and
-- how they end (a "stop" event names the function a trace ends in, which
-- for a trace through the pipeline may be another).
local started, outcome = {}, {}
jit.attach(function(what, tr, func, pc, otr, oex)
  if what == "start" then
    local info = jutil.funcinfo(func, pc)
    if info.source and info.source:find("qhost/runtime/process_batch.lua", 1, true) then
      started[tr] = info.linedefined
    else
      started[tr] = nil
    end
  elseif started[tr] and (what == "stop" or what == "abort") then
    outcome[#outcome + 1] = { line = started[tr], what = what, why = what == "abort" and
      string.format(require("jit.vmdef").traceerr[otr] or tostring(otr), oex) or nil }
    started[tr] = nil
  end
end, "trace")
local app = qhost.Application{ consumer_group = "]] .. H.unique("g") .. [[", auto_offset_reset = "earliest" }
local Counter = qhost.sources.Source:extend("Counter")
function Counter:run()
  for i = 1, 20000 do self:produce{ key = "k", value = '{"n":' .. i .. '}' } end
end
local sdf = app:dataframe{ source = Counter{ name = "]] .. H.unique("jit") .. [[" } }
-- The first message waits for the source to have produced everything, so the
-- loop then sees full batches whatever the machine's timing (messages that
-- trickle in one or two per batch leave each trace at the loop's end).
sdf = sdf:update(function(v) if v.n == 1 then qhost.sleep(1) end end)
sdf = sdf:filter(function(v) return v.n % 2 == 0 end):apply(function(v) v.m = v.n * 2; return v end)
local out = app:run{ count = 10000 }
jit.attach(function() end)
print(#out)
-- The line where process_range is defined, from the loaded chunk.
local src = assert(io.open(package.searchpath("qhost.runtime.process_batch", package.path))):read("*a")
local line = 0
for l in src:gmatch("([^\n]*)\n") do
  line = line + 1
  if l:find("local function process_range", 1, true) then break end
end
local traced, seen = 0, {}
for _, o in ipairs(outcome) do
  if o.line == line then
    if o.what == "stop" then traced = traced + 1 end
    seen[#seen + 1] = o.what .. (o.why and (" " .. o.why) or "")
  end
end
print("traces in process_range", traced)
print("process_range trace events: " .. table.concat(seen, ", "))
]])
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("^10000\n"), r.stdout)
    local traced = tonumber(r.stdout:match("traces in process_range%s+(%d+)"))
    assert.is_true(traced >= 1, r.stdout)
  end)

  -- QHOST_JIT: "off" for the app and the source process it spawns (the
  -- source reports its own jit.status() in each message); the same app
  -- without it runs compiled, so the test sees the difference; a setting
  -- LuaJIT does not know stops the run with its name.
  it("QHOST_JIT=off runs the app and its sources in the interpreter; a bad setting is refused by name", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = "]] .. H.unique("g") .. [[", auto_offset_reset = "earliest" }
local Probe = qhost.sources.Source:extend("Probe")
function Probe:run()
  for i = 1, 100 do
    local msg = self:serialize{ key = "k", value = { n = i, source_jit = jit.status() } }
    self:produce{ key = msg.key, value = msg.value }
  end
end
local sdf = app:dataframe{ source = Probe{ name = "]] .. H.unique("probe") .. [[" } }
sdf = sdf:apply(function(v) v.app_jit = jit.status(); return v end)
local sum, seen = 0, {}
for _, v in ipairs(app:run{ count = 100 }) do
  sum = sum + v.n
  seen["source " .. tostring(v.source_jit)] = true
  seen["app " .. tostring(v.app_jit)] = true
end
local list = {}
for k in pairs(seen) do list[#list + 1] = k end
table.sort(list)
print(sum, table.concat(list, ", "))
]])
    local off = H.run(dir, "app.lua", { env = { QHOST_JIT = "off" } })
    assert.are.equal(0, off.code, off.stderr)
    assert.are.equal("5050\tapp false, source false\n", off.stdout)
    local on = H.run(dir, "app.lua")
    assert.are.equal(0, on.code, on.stderr)
    assert.are.equal("5050\tapp true, source true\n", on.stdout)
    local tuned = H.run(dir, "app.lua", { env = { QHOST_JIT = "hotloop=3,hotexit=2" } })
    assert.are.equal(0, tuned.code, tuned.stderr)
    assert.are.equal("5050\tapp true, source true\n", tuned.stdout)
    local bad = H.run(dir, "app.lua", { env = { QHOST_JIT = "hotloop" } })
    assert.are_not.equal(0, bad.code)
    assert.truthy(bad.stderr:find('QHOST_JIT="hotloop": unknown or malformed optimization flag', 1, true), bad.stderr)
    assert.are.equal("", bad.stdout)
  end)
end)
