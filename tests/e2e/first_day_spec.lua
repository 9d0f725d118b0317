-- What a new user meets on the first day: Quix's branching rules in real
-- runs, a script that forgets app:run, and a polling source that stops
-- when asked.
local H = require("helper")

describe("first day #" .. H.mode, function()
  it("print and to_topic without assignment stay one branch: run{ count = 6 } reads 6 messages", function()
    local dir = H.tmpdir()
    local topic = H.unique("inplace")
    H.write(dir .. "/app.lua", string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" }
local Six = qhost.sources.Source:extend("Six")
function Six:run() for i = 1, 6 do self:produce{ value = '{"i":' .. i .. '}' } end end
local sdf = app:dataframe{ source = Six{ name = %q } }
sdf:print{ pretty = false }
sdf:to_topic(app:topic(%q))
local out = app:run{ count = 6, timeout = 20 }
io.stderr:write("OUTPUTS ", #out, "\n")
]], H.unique("g"), topic, H.unique("copy")))
    local r = H.run(dir, "app.lua", { timeout = 90 })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(6, #H.lines(r.stdout), r.stdout)
    assert.truthy(r.stderr:find("OUTPUTS 6\n", 1, true), r.stderr)
  end)

  it("warns when a script declares a pipeline but never calls app:run()", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local app = qhost.Application{}
app:dataframe(app:topic("never")):print{}
]])
    local r = H.run(dir, "app.lua", { timeout = 30 })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("WARNING .*declared 1 dataframe%(s%) and 0 source%(s%) but never called app:run%(%)"),
      r.stderr)
  end)

  it("a source polling with qhost.sleep stops at once when the app stops", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q }
local Poller = qhost.sources.Source:extend("Poller")
function Poller:run()
  self:produce{ value = '{"ready":true}' }
  while self.running do qhost.sleep(3600) end   -- the stop cuts the hour short
end
local sdf = app:dataframe{ source = Poller{ name = %q, shutdown_timeout = 30 } }
sdf:print{ pretty = false }
app:run()
]], H.unique("g"), H.unique("poll")))
    local p = H.start_guarded(finally, dir, "app.lua")
    assert.is_true(H.eventually(function() return p:stdout():find("ready", 1, true) ~= nil end, 60), p:stderr())
    p:signal("TERM")
    local r = assert(p:wait(60))
    assert.are.equal(0, r.code, r.stderr)
    -- Not killed after its shutdown_timeout of 30 s: it ended by itself.
    assert.falsy(r.stderr:find("did not stop within shutdown_timeout", 1, true), r.stderr)
    assert.truthy(r.stderr:find("Poller '[^']+' %(pid %d+%) ended"), r.stderr)
  end)
end)
