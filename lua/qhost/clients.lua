-- qhost.clients: Kafka producer and consumer for the Lua library.
-- Set-up goes through the classic C module qhost.kafka; the per-message calls
-- (produce, poll a batch) go through the FFI (qhost.ffi) so the JIT compiles
-- them into the loop. Expected failures return nil, err.
local ffi = require("ffi")
local C = require("qhost.ffi")
local kafka = require("qhost.kafka")

local clients = {}

local Producer = {}
Producer.__index = Producer

local MAX_HEADERS = 64
local header_names = ffi.new("const char *[?]", MAX_HEADERS)
local header_values = ffi.new("const char *[?]", MAX_HEADERS)
local header_lens = ffi.new("size_t[?]", MAX_HEADERS)
local failure_text = ffi.new("char[512]")
-- The arrays above hold bare pointers, which keep nothing alive: every
-- string behind them (a value made by tostring is referenced by nothing
-- else) is held here from fill_headers until qh_ffi_produce has copied it,
-- then let go. One table for all calls: no allocation per message.
local header_anchor = {}

local function release_headers(n)
  for i = 1, 2 * n do header_anchor[i] = nil end
end

-- clients.producer(config) -> Producer | nil, err. `config` is a table of
-- librdkafka properties.
function clients.producer(config)
  local handle, err = kafka.producer(config)
  if not handle then return nil, err end
  local ptr = ffi.cast("qh_producer *", handle:ptr())
  return setmetatable({ handle = handle, ptr = ptr }, Producer)
end

-- Headers are a list of { name, value } pairs (Kafka allows repeats) or a
-- map name -> value. Values are strings (others are converted with
-- tostring; nil in a pair is a null header). Returns the count, the strings
-- held in header_anchor (release_headers), or nil, err (nothing held).
local function fill_headers(headers)
  local n = 0
  if headers[1] ~= nil or next(headers) == nil then
    for i = 1, #headers do
      local pair = headers[i]
      if n >= MAX_HEADERS then release_headers(n); return nil, "more than " .. MAX_HEADERS .. " headers" end
      local name, value = pair[1], pair[2]
      if type(name) ~= "string" then release_headers(n); return nil, "header name must be a string" end
      if value ~= nil and type(value) ~= "string" then value = tostring(value) end
      header_anchor[2 * n + 1], header_anchor[2 * n + 2] = name, value
      header_names[n], header_values[n], header_lens[n] = name, value, value and #value or 0
      n = n + 1
    end
  else
    for name, value in pairs(headers) do
      if n >= MAX_HEADERS then release_headers(n); return nil, "more than " .. MAX_HEADERS .. " headers" end
      if type(name) ~= "string" then release_headers(n); return nil, "header name must be a string" end
      if type(value) ~= "string" then value = tostring(value) end
      header_anchor[2 * n + 1], header_anchor[2 * n + 2] = name, value
      header_names[n], header_values[n], header_lens[n] = name, value, #value
      n = n + 1
    end
  end
  return n
end

-- A delivery failure of an earlier message surfaces here, at the next call,
-- as Quix raises it at the next produce.
function Producer:check_delivery()
  if C.qh_ffi_producer_take_failures(self.ptr, failure_text, 512) > 0 then
    return nil, ffi.string(failure_text)
  end
  return true
end

-- producer:produce(topic, value, key, partition, timestamp_ms, headers)
-- -> true | nil, err. value and key are strings (or nil).
function Producer:produce(topic, value, key, partition, timestamp, headers)
  -- Serve delivery reports as we go (librdkafka only runs them in poll).
  C.qh_ffi_producer_poll(self.ptr, 0)
  if C.qh_ffi_producer_take_failures(self.ptr, failure_text, 512) > 0 then
    return nil, ffi.string(failure_text)
  end
  local nh = 0
  if headers ~= nil then
    local herr
    nh, herr = fill_headers(headers)
    if not nh then return nil, "produce to " .. topic .. ": " .. herr end
  end
  local rc = C.qh_ffi_produce(self.ptr, topic, partition or -1,
    key, key and #key or 0, value, value and #value or 0,
    timestamp or 0, nh, header_names, header_values, header_lens)
  if nh > 0 then release_headers(nh) end
  if rc ~= 0 then return nil, ffi.string(C.qh_ffi_producer_errstr(self.ptr)) end
  return true
end

-- producer:prepare(topic): fetch the topic's metadata now, not at the
-- first message (which would then wait up to librdkafka's 1 s topic scan).
function Producer:prepare(topic)
  C.qh_ffi_producer_topic(self.ptr, topic)
end

function Producer:poll(timeout_ms)
  return C.qh_ffi_producer_poll(self.ptr, timeout_ms or 0)
end

-- Waits up to timeout seconds for every queued message; returns true, or
-- nil, err naming how many were not delivered (or the first failure).
function Producer:flush(timeout)
  local remaining = self.handle:flush(timeout or 10)
  local ok, err = self:check_delivery()
  if not ok then return nil, err end
  if remaining > 0 then
    return nil, string.format("flush timed out: %d messages not delivered", remaining)
  end
  return true
end

function Producer:take_errors() return self.handle:take_errors() end

function Producer:close()
  self.handle:close()
end

local Consumer = {}
Consumer.__index = Consumer

function clients.consumer(config)
  local handle, err = kafka.consumer(config)
  if not handle then return nil, err end
  local ptr = ffi.cast("qh_consumer *", handle:ptr())
  return setmetatable({ handle = handle, ptr = ptr, out = ffi.new("qh_msg *[1]") }, Consumer)
end

-- Returns n and the batch (a qh_msg array indexed 0..n-1). Borrowed: valid
-- until the next poll.
function Consumer:poll(max, timeout_ms)
  local n = C.qh_ffi_consumer_poll(self.ptr, max, timeout_ms, self.out)
  return n, self.out[0]
end

local hname = ffi.new("const char *[1]")
local hvalue = ffi.new("const char *[1]")
local hlen = ffi.new("size_t[1]")

-- The headers of message i of the current batch as a list of
-- { name, value } pairs (value nil for a null header), or nil when none.
function Consumer:headers(i, count)
  if count == 0 then return nil end
  local list = {}
  for idx = 0, count - 1 do
    if C.qh_ffi_msg_header(self.ptr, i, idx, hname, hvalue, hlen) ~= 0 then break end
    local value = hvalue[0] ~= nil and ffi.string(hvalue[0], hlen[0]) or nil
    list[#list + 1] = { ffi.string(hname[0]), value }
  end
  return list
end

function Consumer:errstr(i)
  return ffi.string(C.qh_ffi_msg_errstr(self.ptr, i))
end

for _, name in ipairs({ "subscribe", "assign", "take_events", "assignment", "store_offsets", "commit",
                        "committed", "watermarks", "take_errors", "close" }) do
  Consumer[name] = function(self, ...) return self.handle[name](self.handle, ...) end
end

clients.admin = kafka.admin
clients.mock_cluster = kafka.mock_cluster

return clients
