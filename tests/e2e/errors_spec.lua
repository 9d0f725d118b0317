-- Error policies: bad payloads go to on_consumer_error, failing functions
-- to on_processing_error; true skips the message, anything else stops the
-- app with the message's topic, partition and offset in the error.
local H = require("helper")

local function script(topic, options, body)
  return string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" %s }
local Raw = qhost.sources.Source:extend("Raw")
function Raw:run()
  for _, v in ipairs(self.values) do self:produce{ value = v } end
end
local topic = app:topic(%q, { value_deserializer = os.getenv("DESER") or "json" })
local sdf = app:dataframe{ topic = topic, source = Raw{ name = %q, values = { '{"n":1}', '{"n":', '{"n":3}', "\0\0\0\5" } } }
%s
]], H.unique("g"), options, topic, topic, body)
end

describe("error policies #" .. H.mode, function()
  it("stops on invalid JSON by default, naming topic, partition and offset", function()
    local dir = H.tmpdir()
    local topic = H.unique("badjson")
    H.write(dir .. "/app.lua", script(topic, "", "sdf:print{ pretty = false }\napp:run()"))
    local r = H.run(dir, "app.lua", { timeout = 60 })
    assert.are.equal(1, r.code, r.stderr)
    assert.truthy(r.stderr:find("cannot deserialize the value of the message at topic '" .. topic:gsub("%-", "%%-")
      .. "' partition 0 offset 1: invalid JSON at byte 6", 1), r.stderr)
    assert.are.equal('{"value":{"n":1}}\n', r.stdout)
  end)

  it("skips messages on_consumer_error returns true for, and goes on", function()
    local dir = H.tmpdir()
    local topic = H.unique("skipjson")
    H.write(dir .. "/app.lua", script(topic, [[, on_consumer_error = function(err, row, logger)
      io.stderr:write("SKIPPED offset ", tostring(row and row.offset), "\n")
      return true
    end]], "local out = app:run{ count = 2, timeout = 10 }\nprint(out[1].n, out[2].n)"))
    local r = H.run(dir, "app.lua", { timeout = 60 })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("1\t3\n", r.stdout)
    assert.truthy(r.stderr:find("SKIPPED offset 1\n", 1, true), r.stderr)
    -- count = 2 stops right after the second output: offset 3 is never read.
    assert.falsy(r.stderr:find("SKIPPED offset 3\n", 1, true), r.stderr)
  end)

  it("reports a wrong-size int payload to on_consumer_error", function()
    local dir = H.tmpdir()
    local topic = H.unique("badint")
    H.write(dir .. "/app.lua", script(topic, [[, on_consumer_error = function(err)
      io.stderr:write("ERR ", err, "\n")
      return true
    end]], "local out = app:run{ count = 1, timeout = 10 }\nprint(out[1])"))
    local r = H.run(dir, "app.lua", { timeout = 60, env = { DESER = "int" } })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("5\n", r.stdout)
    assert.truthy(r.stderr:find("offset 0: int payload must be 4 bytes, got 7", 1, true), r.stderr)
  end)

  it("skips failing messages on_processing_error returns true for, and calls on_message_processed", function()
    local dir = H.tmpdir()
    local topic = H.unique("skipproc")
    H.write(dir .. "/app.lua", script(topic, [[, on_consumer_error = function() return true end,
      on_processing_error = function(err, row)
        io.stderr:write("PROC ", err:match("[^\n]*"), "\n")
        return true
      end,
      on_message_processed = function(t, p, o) io.stderr:write("DONE ", o, "\n") end]], [[
sdf = sdf:apply(function(v) if v.n == 1 then error("no ones") end return v.n end)
local out = app:run{ count = 1, timeout = 10 }
print(out[1])
]]))
    local r = H.run(dir, "app.lua", { timeout = 60 })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("3\n", r.stdout)
    assert.truthy(r.stderr:find("PROC error processing the message at topic '[^']+' partition 0 offset 0: app%.lua:%d+: no ones"), r.stderr)
    assert.truthy(r.stderr:find("DONE 2\n", 1, true), r.stderr)
    -- As Quix: a suppressed processing error counts as processed, a message
    -- a consumer error skipped does not.
    assert.truthy(r.stderr:find("DONE 0\n", 1, true), r.stderr)
    assert.falsy(r.stderr:find("DONE 1\n", 1, true), r.stderr)
  end)
end)
