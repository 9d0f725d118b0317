-- qhost.sinks: BaseSink, BatchingSink and CSVSink (Quix's
-- quixstreams/sinks/base and sinks/core/csv.py). A sink gets every message
-- that reaches `sdf:sink(sink)` through add(), and is flushed per topic
-- partition at each checkpoint, before the offsets are committed: a flush
-- that raises aborts the checkpoint, so nothing is committed past data the
-- sink did not take and those messages are processed again.
local argcheck = require("qhost.runtime.argcheck")
local codec = require("qhost.codec")

local sinks = {}

local class = require("qhost.runtime.class")
local construct = class.construct

local BaseSink = { __name = "BaseSink" }
BaseSink.__index = BaseSink
setmetatable(BaseSink, { __call = construct })

-- Sink:extend("Name") -> a subclass.
function BaseSink:extend(name)
  if type(name) ~= "string" or name == "" then error("extend expects a class name string", 2) end
  local cls = { __name = name, __super = self }
  cls.__index = cls
  return setmetatable(cls, { __index = self, __call = construct })
end

function BaseSink:init() end

-- Called once before the first message.
function BaseSink:setup() end

function BaseSink:add(value, key, timestamp, headers, topic, partition, offset) -- luacheck: ignore
  error(self.__name .. ": add() is not implemented", 2)
end

-- Called at each checkpoint for every topic partition processed since the
-- last one.
function BaseSink:flush(topic, partition) end -- luacheck: ignore

-- Called when what was added for a topic partition since the last flush
-- must not be written: its messages will be processed again by whoever
-- owns the partition next. A sink that keeps data per partition drops it.
function BaseSink:discard(topic, partition) end -- luacheck: ignore

function sinks.is_sink(x)
  return class.is_a(x, BaseSink)
end

-- BatchingSink: collects per topic partition; write(batch) gets them at
-- the flush. As Quix's SinkBatch, the batch is the list of its items
-- (`for _, item in ipairs(batch)`, `#batch`), each { value =, key =,
-- timestamp =, headers =, offset = }, with the fields topic, partition,
-- size and start_offset (the first item's offset). batch.items is the same
-- list, by its older name.
local BatchingSink = BaseSink:extend("BatchingSink")

function BatchingSink:init()
  rawset(self, "_batches", {})
end

function BatchingSink:add(value, key, timestamp, headers, topic, partition, offset)
  local by_topic = self._batches[topic]
  if not by_topic then by_topic = {}; self._batches[topic] = by_topic end
  local batch = by_topic[partition]
  if not batch then
    batch = { topic = topic, partition = partition, size = 0, start_offset = offset }
    batch.items = batch
    by_topic[partition] = batch
  end
  local size = batch.size + 1
  batch[size] = { value = value, key = key, timestamp = timestamp, headers = headers, offset = offset }
  batch.size = size
end

function BatchingSink:flush(topic, partition)
  local by_topic = self._batches[topic]
  local batch = by_topic and by_topic[partition]
  if not batch or batch.size == 0 then return end
  -- Only a written batch is dropped: a failed write keeps it, but the
  -- checkpoint fails and the app stops, so it is processed again anyway.
  self:write(batch)
  by_topic[partition] = nil
end

-- Drops what was collected for a partition without writing it (the
-- partition was revoked, or its messages will be processed again).
function BatchingSink:discard(topic, partition)
  local by_topic = self._batches[topic]
  if by_topic then by_topic[partition] = nil end
end

function BatchingSink:write(batch) -- luacheck: ignore
  error(self.__name .. ": write(batch) is not implemented", 2)
end

-- CSVSink{ path, delimiter = ",", key_serializer = fn, value_serializer = fn }:
-- appends rows key,value,timestamp,topic,partition,offset; the header only
-- when the file is new or empty.
local CSVSink = BatchingSink:extend("CSVSink")

local CSV_SINK_OPTIONS = argcheck.declare("CSVSink", { path = "string", delimiter = "string",
  key_serializer = "function", value_serializer = "function" })

function CSVSink:init(opts)
  if getmetatable(self) == CSVSink then argcheck.options("CSVSink", opts, CSV_SINK_OPTIONS) end
  BatchingSink.init(self, opts)
  if type(opts.path) ~= "string" or opts.path == "" then argcheck.fail("CSVSink: path must be a file path") end
  self.delimiter = opts.delimiter or ","
  if type(self.delimiter) ~= "string" or #self.delimiter ~= 1 then
    argcheck.fail("CSVSink: delimiter must be a single character")
  end
end

local function csv_field(s, delimiter)
  s = tostring(s)
  if s:find('[' .. delimiter:gsub("%p", "%%%0") .. '"\r\n]') then
    return '"' .. s:gsub('"', '""') .. '"'
  end
  return s
end

function CSVSink:_serialize_value(value)
  if self.value_serializer then return self.value_serializer(value) end
  local text, err = codec.json_encode(value)
  if not text then error("CSVSink: cannot serialize a value as JSON: " .. err, 0) end
  return text
end

function CSVSink:write(batch)
  local f, err = io.open(self.path, "ab")
  if not f then error("CSVSink: cannot open " .. tostring(err), 0) end
  local d = self.delimiter
  local lines = {}
  if f:seek("end") == 0 then
    lines[1] = table.concat({ "key", "value", "timestamp", "topic", "partition", "offset" }, d)
  end
  for _, item in ipairs(batch) do
    local key = item.key
    if self.key_serializer then key = self.key_serializer(key) end
    lines[#lines + 1] = table.concat({
      key == nil and "" or csv_field(key, d),
      csv_field(self:_serialize_value(item.value), d),
      item.timestamp == nil and "" or csv_field(string.format("%d", item.timestamp), d),
      csv_field(batch.topic, d), tostring(batch.partition), string.format("%d", item.offset),
    }, d)
  end
  local ok, err = f:write(table.concat(lines, "\n"), "\n")
  if ok then ok, err = f:close() else f:close() end
  if not ok then error("CSVSink: cannot write " .. self.path .. ": " .. tostring(err), 0) end
end

sinks.BaseSink = BaseSink
sinks.BatchingSink = BatchingSink
sinks.CSVSink = CSVSink
return sinks
