-- CSVSource: produces every row of a CSV file as a JSON object of strings in
-- header order (API.md; behaviour as Quix's quixstreams/sources/core/csv.py).
-- The file is read in chunks by the host's libcsv reader, so memory stays
-- constant however large it is; the first row is the header.
local ffi = require("ffi")
local argcheck = require("qhost.runtime.argcheck")
local csvreader = require("qhost.csvreader")
local host = require("qhost.host")
local source = require("qhost.sources.source")
local Source = source.Source
local topic_mod = require("qhost.topic")

local CSVSource = Source:extend("CSVSource")

-- host/csv.h: a row's JSON text read by the FFI, the run loop's one C call
-- per row besides the produce (both compiled into the loop's trace).
ffi.cdef[[
typedef struct csv_reader qh_csv_reader;
const char *qh_ffi_csv_next_json(qh_csv_reader *r, size_t *len);
const char *qh_ffi_csv_error(const qh_csv_reader *r);
]]
local C = ffi.C

local DIALECTS = {
  excel = { delimiter = ",", quotechar = '"' },
  ["excel-tab"] = { delimiter = "\t", quotechar = '"' },
  unix = { delimiter = ",", quotechar = '"' },
}

local function basename(path)
  return (path:gsub("/+$", ""):match("([^/]+)$")) or path
end

local function check_extractor(self, field)
  local value = self[field]
  if value ~= nil and type(value) ~= "string" and type(value) ~= "function" then
    argcheck.fail("CSVSource '%s': %s must be a column name or a function, got %s",
      self.name, field, type(value))
  end
end

local function check_char(self, field)
  local value = self[field]
  if value ~= nil and (type(value) ~= "string" or #value ~= 1 or value == "\n" or value == "\r") then
    argcheck.fail("CSVSource '%s': %s must be a single character other than a line break", self.name, field)
  end
end

-- CSVSource{ path, name = <base name of path>, key_extractor, timestamp_extractor,
--            delay = 0, dialect = "excel", delimiter, quotechar, shutdown_timeout = 10 }
local OPTIONS = argcheck.declare("CSVSource", {
  path = "string", name = "string", key_extractor = "string|function", timestamp_extractor = "string|function",
  delay = "number", dialect = "string", delimiter = "string", quotechar = "string", shutdown_timeout = "number",
  on_client_connect_success = "function", on_client_connect_failure = "function",
})

function CSVSource:init(opts)
  -- A subclass may take options of its own.
  if getmetatable(self) == CSVSource then argcheck.options("CSVSource", opts, OPTIONS) end
  if type(opts.path) ~= "string" or opts.path == "" then
    argcheck.fail("CSVSource: path must be the path of a CSV file")
  end
  self.name = opts.name or basename(opts.path)
  Source.init(self, opts)
  self.dialect = opts.dialect or "excel"
  if not DIALECTS[self.dialect] then
    argcheck.fail("CSVSource '%s': unknown dialect %q (excel, excel-tab, unix)", self.name,
      tostring(self.dialect))
  end
  self.delay = opts.delay or 0
  if type(self.delay) ~= "number" or self.delay < 0 then
    argcheck.fail("CSVSource '%s': delay must be a number of seconds >= 0", self.name)
  end
  check_extractor(self, "key_extractor")
  check_extractor(self, "timestamp_extractor")
  check_char(self, "delimiter")
  check_char(self, "quotechar")
  local dialect = DIALECTS[self.dialect]
  if (self.delimiter or dialect.delimiter) == (self.quotechar or dialect.quotechar) then
    argcheck.fail("CSVSource '%s': delimiter and quotechar must differ", self.name)
  end
end

-- Quix: string keys, JSON values.
function CSVSource:default_topic()
  return topic_mod.new(source.default_topic_name(self), {
    key_serializer = "string", key_deserializer = "string",
    value_serializer = "json", value_deserializer = "json",
  })
end

local function row_table(header, fields)
  local row = {}
  for i = 1, #header do row[header[i]] = fields[i] end
  return row
end

-- An extractor as a function of (fields, row-maker): a column name becomes
-- an index lookup, checked against the header once.
local function compile_extractor(self, field, header)
  local spec = self[field]
  if spec == nil then return nil end
  if type(spec) == "function" then
    return function(fields) return spec(row_table(header, fields)) end
  end
  for i, name in ipairs(header) do
    if name == spec then return function(fields) return fields[i] end end
  end
  error(string.format("CSVSource '%s': %s column %q is not in the header of %s", self.name, field,
    spec, self.path), 0)
end

function CSVSource:run()
  local dialect = DIALECTS[self.dialect]
  local reader, err = csvreader.open(self.path, {
    delimiter = self.delimiter or dialect.delimiter,
    quotechar = self.quotechar or dialect.quotechar,
  })
  if not reader then error(string.format("CSVSource '%s': %s", self.name, err), 0) end
  local header, herr = reader:read_row()
  if not header then
    reader:close()
    if herr then error(string.format("CSVSource '%s': %s", self.name, herr), 0) end
    return   -- an empty file has no rows
  end
  local key_of = compile_extractor(self, "key_extractor", header)
  local timestamp_of = compile_extractor(self, "timestamp_extractor", header)
  local delay = self.delay
  local function fail(err) error(string.format("CSVSource '%s': %s", self.name, err), 0) end
  -- A column named twice would give a JSON object with the key twice;
  -- which value is meant is the file's to say.
  local column_of = {}
  for i, name in ipairs(header) do
    if column_of[name] then
      reader:close()
      fail(string.format("%s:1: the header names column %q twice (columns %d and %d)", self.path, name,
        column_of[name], i))
    end
    column_of[name] = i
  end

  -- The next row as a message (value, key, timestamp, or nil at the end),
  -- and how it is produced (by the source's produce, but for one way).
  local next_message
  local produce_row = function(value, key, timestamp)
    self:produce{ value = value, key = key, timestamp = timestamp }
  end
  -- Nothing needs the fields one by one: each row goes from libcsv's
  -- buffer to its JSON text and to the producer without becoming a Lua
  -- string (interning and collecting one per row was a sixth of the
  -- source's CPU). Unless a subclass produces its own way, or the header
  -- cannot be JSON (not UTF-8): read_json below says so at the first row,
  -- after any error in the row itself, as the other way does.
  if not key_of and not timestamp_of and self.produce == Source.produce and reader:set_header(header) then
    local ptr = ffi.cast("qh_csv_reader *", reader:ptr())
    local len = ffi.new("size_t[1]")
    local produce_bytes = source.produce_bytes
    next_message = function()
      local value = C.qh_ffi_csv_next_json(ptr, len)
      if value ~= nil then return value end
      local err = C.qh_ffi_csv_error(ptr)
      if err ~= nil then
        err = ffi.string(err)
        reader:close()
        fail(err)
      end
      return nil   -- (a NULL pointer is no nil to `not`)
    end
    produce_row = function(value) produce_bytes(self, value, tonumber(len[0])) end
  elseif not key_of and not timestamp_of then
    next_message = function()
      local value, err = reader:read_json(header)
      if not value and err then fail(err) end
      return value
    end
  else
    next_message = function()
      local fields, line = reader:read_row()
      if not fields then
        if line then fail(line) end      -- here `line` is the error
        return nil
      end
      local value, jerr = reader:row_json(header, fields, line)
      if not value then fail(jerr) end
      local key, timestamp
      if key_of then
        key = key_of(fields)
        if type(key) == "number" then key = tostring(key)
        elseif key ~= nil and type(key) ~= "string" then
          fail(string.format("%s:%d: key_extractor returned a %s, not a string", self.path, line, type(key)))
        end
      end
      if timestamp_of then
        -- Whole milliseconds, written in decimal (as Python's int() reads
        -- them): "0x10", "1.5", "-5" or NaN would become another time.
        local raw = timestamp_of(fields)
        timestamp = raw
        if type(raw) == "string" then timestamp = raw:match("^%s*%d+%s*$") and tonumber(raw) or nil end
        if timestamp == nil or source.timestamp_problem(timestamp) then
          fail(string.format("%s:%d: timestamp %q is not a whole number of milliseconds", self.path, line,
            tostring(raw)))
        end
      end
      return value, key, timestamp
    end
  end

  while self.running do
    local value, key, timestamp = next_message()
    if not value then break end
    produce_row(value, key, timestamp)
    if delay > 0 then host.sleep_unless_stopped(delay) end   -- a stop cuts it short
  end
  reader:close()
end

return CSVSource
