-- The three seed examples of API.md, run verbatim from examples/.
local H = require("helper")

-- Objects printed by print{ pretty = true }: one JSON object per message,
-- each starting at a line "{" and ending at a line "}".
local function pretty_objects(text)
  local json = require("qhost").json
  local list = {}
  for block in text:gmatch("\n?(%{\n.-\n%})") do list[#list + 1] = assert(json.decode(block)) end
  return list
end

describe("example csv_print.lua #" .. H.mode, function()
  it("prints every row with key, timestamp and headers, then stops cleanly on SIGTERM", function()
    local dir = H.tmpdir()
    H.copy_example("csv_print.lua", dir)
    H.write(dir .. "/input.csv", H.INPUT_CSV)
    local p = H.start(dir, "csv_print.lua")
    assert.is_true(H.eventually(function() return #pretty_objects(p:stdout()) >= 5 end, 60), p:stderr())
    local children = H.children(p.pid)
    p:signal("TERM")
    local r = assert(p:wait(60))
    assert.are.equal(0, r.code, r.stderr)
    local rows = pretty_objects(r.stdout)
    assert.are.equal(5, #rows)
    for i, row in ipairs(rows) do
      assert.are.same({ key = "key" .. i, field = "value" .. i, timestamp = tostring(i) }, row.value)
      assert.are.equal(require("qhost").json.null, row.key)
      assert.are.equal("number", type(row.timestamp))
      assert.is_true(row.timestamp > 1.6e12)
      assert.are.equal(require("qhost").json.null, row.headers)
    end
    -- Header order is kept: "key", then "field", then "timestamp".
    assert.truthy(r.stdout:find('"key": "key1",\n    "field": "value1",\n    "timestamp": "1"', 1, true))
    for _, pid in ipairs(children) do assert.is_false(H.alive(pid)) end
    if H.mode == "embedded" then
      assert.truthy(r.stderr:find("embedded broker at 127.0.0.1:%d+"))
    else
      assert.falsy(r.stderr:find("embedded broker"))
    end
  end)
end)

describe("example csv_custom_topic.lua #" .. H.mode, function()
  it("creates the topic with 4 partitions and consumes all of them", function()
    local dir = H.tmpdir()
    H.copy_example("csv_custom_topic.lua", dir)
    local lines = { "key,field,timestamp" }
    for i = 1, 200 do lines[#lines + 1] = string.format("key%d,value%d,%d", i, i, i) end
    H.write(dir .. "/input.csv", table.concat(lines, "\n") .. "\n")
    local p = H.start(dir, "csv_custom_topic.lua")
    assert.is_true(H.eventually(function() return #pretty_objects(p:stdout()) >= 200 end, 60), p:stderr())
    p:signal("INT")
    local r = assert(p:wait(60))
    assert.are.equal(0, r.code, r.stderr)
    local seen = {}
    for _, row in ipairs(pretty_objects(r.stdout)) do seen[row.value.key] = true end
    for i = 1, 200 do assert.is_true(seen["key" .. i], "key" .. i) end
    assert.truthy(r.stderr:find("assigned 4 partitions", 1, true), r.stderr)
  end)

  it("spreads the rows over the 4 partitions", function()
    local dir = H.tmpdir()
    local topic = H.unique("custom")
    H.write(dir .. "/app.lua", string.format([[
      local qhost = require("qhost")
      local app = qhost.Application{ consumer_group = %q }
      local source = qhost.sources.CSVSource{ path = "input.csv", name = %q, key_extractor = "id" }
      local topic = app:topic(%q, { config = qhost.TopicConfig{ num_partitions = 4, replication_factor = 1 } })
      local sdf = app:dataframe{ topic = topic, source = source }
      local out = app:run{ count = 200, metadata = true }
      local parts = {}
      for _, row in ipairs(out) do parts[row._partition] = (parts[row._partition] or 0) + 1 end
      for p = 0, 3 do print(p, parts[p] or 0) end
    ]], topic, topic, topic))
    local lines = { "id,v" }
    for i = 1, 200 do lines[#lines + 1] = i .. ",x" end
    H.write(dir .. "/input.csv", table.concat(lines, "\n") .. "\n")
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    local total = 0
    for p, n in r.stdout:gmatch("(%d)\t(%d+)") do
      assert.is_true(tonumber(n) > 0, "partition " .. p .. " got no rows")
      total = total + tonumber(n)
    end
    assert.are.equal(200, total)
  end)
end)

describe("example standalone_source.lua #" .. H.mode, function()
  it("runs the source and returns when it has ended", function()
    local dir = H.tmpdir()
    H.copy_example("standalone_source.lua", dir)
    H.write(dir .. "/input.csv", H.INPUT_CSV)
    local r = H.run(dir, "standalone_source.lua", { timeout = 60 })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("CSVSource 'input.csv' %(pid %d+%) ended"), r.stderr)
    assert.are.equal("", r.stdout)
  end)
end)
