local qhost = require("qhost")
local sinks = qhost.sinks

describe("BatchingSink", function()
  it("hands per-partition batches to write at flush, then forgets them", function()
    local Collect = sinks.BatchingSink:extend("Collect")
    local written = {}
    function Collect:write(batch) written[#written + 1] = batch end
    local s = Collect{}
    s:add("a", "k1", 1, nil, "t", 0, 10)
    s:add("b", "k2", 2, nil, "t", 1, 20)
    s:add("c", "k3", 3, nil, "t", 0, 11)
    s:flush("t", 0)
    assert.are.equal(1, #written)
    assert.are.equal("t", written[1].topic)
    assert.are.equal(0, written[1].partition)
    -- The batch is the list of its items, as Quix's SinkBatch iterates.
    local items = {}
    for _, item in ipairs(written[1]) do items[#items + 1] = item end
    assert.are.same({ { value = "a", key = "k1", timestamp = 1, offset = 10 },
                      { value = "c", key = "k3", timestamp = 3, offset = 11 } }, items)
    assert.are.equal(2, #written[1])
    assert.are.equal(2, written[1].size)
    assert.are.equal(10, written[1].start_offset)
    assert.are.equal(written[1], written[1].items)
    s:flush("t", 0)
    assert.are.equal(1, #written)          -- nothing new: no write
    s:flush("t", 1)
    assert.are.equal("b", written[2].items[1].value)
  end)
  it("keeps a batch whose write fails", function()
    local Failing = sinks.BatchingSink:extend("Failing")
    local fail = true
    local got
    function Failing:write(batch) if fail then error("disk full") end got = batch end
    local s = Failing{}
    s:add(1, nil, 0, nil, "t", 0, 5)
    assert.has_error(function() s:flush("t", 0) end)
    fail = false
    s:flush("t", 0)
    assert.are.equal(5, got.items[1].offset)
  end)
  it("raises when write is not implemented", function()
    local s = sinks.BatchingSink{}
    s:add(1, nil, 0, nil, "t", 0, 0)
    assert.has_error(function() s:flush("t", 0) end, "BatchingSink: write(batch) is not implemented")
  end)
end)

describe("CSVSink", function()
  -- A path for a new file, and a function that reads it once and removes it.
  local function new_file()
    local path = os.tmpname()
    os.remove(path)
    return path, function()
      local f = assert(io.open(path))
      local text = f:read("*a")
      f:close()
      os.remove(path)
      return text
    end
  end

  it("writes Quix's columns, a header only for a new file, and quotes fields", function()
    local path, contents = new_file()
    local s = sinks.CSVSink{ path = path }
    s:add({ a = 1, b = "x,y" }, "k1", 1700000000000, nil, "orders", 2, 7)
    s:flush("orders", 2)
    local s2 = sinks.CSVSink{ path = path }
    s2:add("plain", nil, 5, nil, "orders", 0, 8)
    s2:flush("orders", 0)
    local text = contents()
    -- What Quix's CSVSink (Python's csv.DictWriter, json.dumps, str) writes
    -- for the same two messages, byte for byte.
    assert.are.equal('key,value,timestamp,topic,partition,offset\r\n'
      .. 'k1,"{""a"": 1, ""b"": ""x,y""}",1700000000000,orders,2,7\r\n'
      .. 'None,"""plain""",5,orders,0,8\r\n', text)
  end)
  it("writes the unix dialect as Python does: every field quoted, \\n; values ASCII as json.dumps", function()
    local path, contents = new_file()
    local s = sinks.CSVSink{ path = path, dialect = "unix" }
    s:add({ a = "é😀" }, "k1", 1, nil, "orders", 2, 7)
    s:flush("orders", 2)
    local text = contents()
    assert.are.equal('"key","value","timestamp","topic","partition","offset"\n'
      .. '"k1","{""a"": ""\\u00e9\\ud83d\\ude00""}","1","orders","2","7"\n', text)
    assert.has_error(function() sinks.CSVSink{ path = path, dialect = "tsv" } end,
      'CSVSink: unknown dialect "tsv" (excel, excel-tab, unix)')
  end)
  it("needs a path", function()
    assert.has_error(function() sinks.CSVSink{} end, "CSVSink: path must be a file path")
  end)
end)

describe("StreamingDataFrame:sink", function()
  it("adds every message with its metadata", function()
    local app = qhost.Application{}
    local sdf = app:dataframe(app:topic("in"))
    local Collect = sinks.BaseSink:extend("CollectAll")
    local got = {}
    function Collect:add(value, key, ts, headers, topic) got[#got + 1] = { value, key, ts, topic } end
    sdf:apply(function(v) return v * 2 end):sink(Collect{})
    sdf:test(21, { key = "k", timestamp = 9 })
    assert.are.same({ { 42, "k", 9, "in" } }, got)
    assert.has_error(function() sdf:sink({}) end)
  end)
end)
