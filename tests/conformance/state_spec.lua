-- Conformance with Quix Streams, stateful processing: the same input topic
-- of a real Kafka through the same pipeline in Quix (Python) and in qhost
-- gives the same output records, per key in order (values compared as JSON
-- values: a Lua table has no key order).
-- Needs QHOST_BROKER (a real Kafka) and QHOST_QUIX_PYTHON (a Python with
-- quixstreams, tests/quix-venv.sh makes one).
local H = require("helper")
local compare = dofile((os.getenv("QHOST_TEST_ROOT") or ".") .. "/tests/conformance/compare.lua")

local HERE = (os.getenv("QHOST_TEST_ROOT") or ".") .. "/tests/conformance/apps/"
local PYTHON = os.getenv("QHOST_QUIX_PYTHON")

-- A keyed input: `n` messages over `keys` keys on `partitions` partitions.
local FILL = [[
local qhost = require("qhost")
local app = qhost.Application{}
local Fill = qhost.sources.Source:extend("Fill")
function Fill:run()
  for i = 1, self.n do
    local k = "key-" .. (i * 7919 % self.keys)
    self:produce{ key = k, value = '{"k":"' .. k .. '","v":' .. (i * 31 % 1000) .. '}' }
  end
end
app:add_source(Fill{ name = arg[1], n = tonumber(arg[2]), keys = tonumber(arg[3]) },
  app:topic(arg[1], { config = qhost.TopicConfig{ num_partitions = tonumber(arg[4]) } }))
app:run()
]]

describe("conformance with Quix Streams #" .. H.mode, function()
  it("stateful: per-key running count and sum over 2 partitions", function()
    if H.mode ~= "kafka" or not PYTHON then pending("needs a real Kafka and Quix Streams") return end
    local dir = H.tmpdir()
    local input = H.unique("conf-in")
    local N = 400
    H.write(dir .. "/fill.lua", FILL)
    local r = H.run(dir, "fill.lua", { args = { input, tostring(N), "13", "2" }, timeout = 120 })
    assert.are.equal(0, r.code, r.stderr)

    local quix_out, qhost_out = H.unique("conf-quix"), H.unique("conf-qhost")
    local cmd = string.format("cd %s && timeout -s KILL 180 %s %s %s %s %s %s %s %d 2>&1; echo rc=$?", H.quote(dir),
      H.quote(PYTHON), H.quote(HERE .. "state_count.py"), H.broker, input, quix_out, H.unique("g-quix"),
      H.quote(dir .. "/quix-state"), N)
    local out = H.exec(cmd)
    assert.truthy(out:find("rc=0\n$"), out)
    r = H.run(dir, HERE .. "state_count.lua", { args = { H.broker, input, qhost_out, H.unique("g-qhost"),
      dir .. "/qhost-state", tostring(N) }, timeout = 180 })
    assert.are.equal(0, r.code, r.stderr)

    -- Values compared as JSON values: the qhost app's output is a table made
    -- in Lua, whose keys have no order (written sorted), where Quix keeps the
    -- dict's.
    local quix, ours = compare.per_key(quix_out), compare.per_key(qhost_out)
    local keys = 0
    for k in pairs(quix) do keys = keys + 1; assert.are.same(quix[k], ours[k], "key " .. k) end
    for k in pairs(ours) do assert.truthy(quix[k], "qhost has key " .. k .. " that Quix has not") end
    assert.are.equal(13, keys)
  end)
end)
