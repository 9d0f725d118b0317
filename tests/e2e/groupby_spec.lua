-- group_by across partitions goes through a repartition topic: every
-- message arrives re-keyed, and one key's messages share one partition.
local H = require("helper")

describe("group_by #" .. H.mode, function()
  it("re-keys through repartition__<group>--<topic>--<name>", function()
    local dir = H.tmpdir()
    local group, topic = H.unique("g"), H.unique("orders")
    H.write(dir .. "/app.lua", string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" }
local Orders = qhost.sources.Source:extend("Orders")
function Orders:run()
  for i = 1, 300 do
    self:produce{ key = tostring(i), value = '{"id":' .. i .. ',"user":"u' .. (i %% 5) .. '"}' }
  end
end
local input = app:topic(%q, { config = qhost.TopicConfig{ num_partitions = 3 } })
local sdf = app:dataframe{ topic = input, source = Orders{ name = %q } }
sdf = sdf:group_by("user")
local out = app:run{ count = 300, metadata = true }
local part_of, bad, ids = {}, 0, {}
for _, row in ipairs(out) do
  if row._key ~= row.user then bad = bad + 1 end
  if part_of[row.user] and part_of[row.user] ~= row._partition then bad = bad + 1 end
  part_of[row.user] = row._partition
  ids[row.id] = true
  assert(row._topic == "repartition__%s--%s--user", row._topic)
end
local n = 0
for _ in pairs(ids) do n = n + 1 end
print(#out, n, bad)
]], group, topic, topic, group, topic))
    local r = H.run(dir, "app.lua", { timeout = 120 })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("300\t300\t0\n", r.stdout)
  end)

  it("print_table prints whole tables when stdout is not a terminal (Quix's non-live mode)", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = "]] .. H.unique("g") .. [[", auto_offset_reset = "earliest" }
local Rows = qhost.sources.Source:extend("Rows")
function Rows:run()
  for i = 1, 3 do self:produce{ value = '{"n":' .. i .. ',"sq":' .. i * i .. '}' } end
end
local sdf = app:dataframe{ source = Rows{ name = "]] .. H.unique("rows") .. [[" } }
sdf:print_table{}
app:run{ count = 3 }
]])
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    -- Three rows, fewer than size = 5: printed when the run ends.
    local lines = H.lines(r.stdout)
    assert.are.equal(7, #lines, r.stdout)
    assert.truthy(lines[2]:find("^| _key | _timestamp +| n | sq |$"), r.stdout)
    for i = 1, 3 do
      assert.truthy(lines[3 + i]:find("^|      | %d+ | " .. i .. " | " .. i * i .. " +|$"), r.stdout)
    end
  end)
end)
