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

-- CSVSink{ path, dialect = "excel", delimiter, key_serializer = fn,
-- value_serializer = fn }: appends rows key,value,timestamp,topic,partition,
-- offset; the header only when the file is new or empty. As Quix's (Python's
-- csv.DictWriter with json.dumps and str): the dialect's line ends and
-- quoting, values as json.dumps writes them, a missing key as "None".
local CSVSink = BatchingSink:extend("CSVSink")

local CSV_SINK_OPTIONS = argcheck.declare("CSVSink", { path = "string", dialect = "string", delimiter = "string",
  key_serializer = "function", value_serializer = "function" })

-- Python's csv dialects: delimiter, line end, and whether every field is
-- quoted (QUOTE_ALL) or only those that need it (QUOTE_MINIMAL).
local SINK_DIALECTS = {
  excel = { delimiter = ",", line_end = "\r\n", quote_all = false },
  ["excel-tab"] = { delimiter = "\t", line_end = "\r\n", quote_all = false },
  unix = { delimiter = ",", line_end = "\n", quote_all = true },
}

function CSVSink:init(opts)
  if getmetatable(self) == CSVSink then argcheck.options("CSVSink", opts, CSV_SINK_OPTIONS) end
  BatchingSink.init(self, opts)
  if type(opts.path) ~= "string" or opts.path == "" then argcheck.fail("CSVSink: path must be a file path") end
  self.dialect = opts.dialect or "excel"
  local dialect = SINK_DIALECTS[self.dialect]
  if not dialect then
    argcheck.fail("CSVSink: unknown dialect %q (excel, excel-tab, unix)", tostring(self.dialect))
  end
  self._format = dialect
  self.delimiter = opts.delimiter or dialect.delimiter
  if type(self.delimiter) ~= "string" or #self.delimiter ~= 1 or self.delimiter == '"' then
    argcheck.fail("CSVSink: delimiter must be a single character other than the quote")
  end
end

local function csv_field(s, delimiter, quote_all)
  s = tostring(s)
  if quote_all or s:find('[' .. delimiter:gsub("%p", "%%%0") .. '"\r\n]') then
    return '"' .. s:gsub('"', '""') .. '"'
  end
  return s
end

-- The text Python's json.dumps gives (Quix's CSVSink writes values with it),
-- from the compact JSON text: ", " and ": " between items, and every
-- character past ASCII as \uXXXX (ensure_ascii; beyond U+FFFF as a
-- surrogate pair). Outside strings JSON has no other bytes to change.
local byte, char, format = string.byte, string.char, string.format

local function python_json(compact)
  local out, n, i, len, in_string = {}, 0, 1, #compact, false
  local function put(s) n = n + 1; out[n] = s end
  while i <= len do
    local c = byte(compact, i)
    if in_string then
      if c == 92 then                         -- backslash: the escape goes as it is
        put(compact:sub(i, i + 1)); i = i + 2
      else
        if c == 34 then in_string = false end
        if c < 128 then
          put(char(c)); i = i + 1
        else                                  -- one UTF-8 sequence (the encoder made it valid)
          local size = c >= 0xF0 and 4 or c >= 0xE0 and 3 or 2
          local cp = c % (size == 2 and 0x20 or size == 3 and 0x10 or 0x08)
          for k = 1, size - 1 do cp = cp * 64 + byte(compact, i + k) % 64 end
          if cp >= 0x10000 then
            cp = cp - 0x10000
            put(format("\\u%04x\\u%04x", 0xD800 + math.floor(cp / 1024), 0xDC00 + cp % 1024))
          else
            put(format("\\u%04x", cp))
          end
          i = i + size
        end
      end
    else
      if c == 34 then in_string = true end
      put(char(c))
      if c == 44 or c == 58 then put(" ") end   -- , and :
      i = i + 1
    end
  end
  return table.concat(out)
end

function CSVSink:_serialize_value(value)
  if self.value_serializer then return self.value_serializer(value) end
  local text, err = codec.json_encode(value)
  if not text then error("CSVSink: cannot serialize a value as JSON: " .. err, 0) end
  return python_json(text)
end

function CSVSink:write(batch)
  local f, err = io.open(self.path, "ab")
  if not f then error("CSVSink: cannot open " .. tostring(err), 0) end
  local d, all, line_end = self.delimiter, self._format.quote_all, self._format.line_end
  local function field(v) return csv_field(v, d, all) end
  local lines = {}
  if f:seek("end") == 0 then
    lines[1] = table.concat({ field("key"), field("value"), field("timestamp"), field("topic"), field("partition"),
      field("offset") }, d)
  end
  for _, item in ipairs(batch) do
    local key = item.key
    if self.key_serializer then key = self.key_serializer(key)
    elseif key == nil then key = "None" end   -- Python's str(None)
    lines[#lines + 1] = table.concat({
      key == nil and "" or field(key),
      field(self:_serialize_value(item.value)),
      item.timestamp == nil and "" or field(string.format("%d", item.timestamp)),
      field(batch.topic), field(tostring(batch.partition)), field(string.format("%d", item.offset)),
    }, d)
  end
  local ok, err = f:write(table.concat(lines, line_end), line_end)
  if ok then ok, err = f:close() else f:close() end
  if not ok then error("CSVSink: cannot write " .. self.path .. ": " .. tostring(err), 0) end
end

sinks.BaseSink = BaseSink
sinks.BatchingSink = BatchingSink
sinks.CSVSink = CSVSink
return sinks
