-- qhost.kafka.clients: Kafka producer and consumer for the Lua library.
-- Set-up goes through the classic C module qhost.kafka; the per-message calls
-- (produce, poll a batch) go through the FFI (qhost.kafka.ffi) so the JIT compiles
-- them into the loop. Expected failures return nil, err.
local ffi = require("ffi")
local C = require("qhost.kafka.ffi")
local kafka = require("qhost.kafka")

local clients = {}

-- rd_kafka_resp_err_t codes callers test for (the third result of a failed
-- produce): a full queue the wait for which a stop (or the producer's
-- qhost.queue.full.timeout.ms) ended; that message was not produced.
clients.ERR_QUEUE_FULL = -184

local Producer = {}
Producer.__index = Producer

local cast, CHAR_PTR = ffi.cast, ffi.typeof("const char *")
local MAX_HEADERS = 64
local header_names = ffi.new("const char *[?]", MAX_HEADERS)
local header_values = ffi.new("const char *[?]", MAX_HEADERS)
local header_lens = ffi.new("size_t[?]", MAX_HEADERS)
-- The arrays above hold bare pointers, which keep nothing alive: every
-- string behind them (a value made by tostring is referenced by nothing
-- else) is held here from fill_headers until qh_ffi_produce has copied it,
-- then let go. One table for all calls: no allocation per message.
local header_anchor = {}

local function release_headers(n)
  for i = 1, 2 * n do header_anchor[i] = nil end
end

-- clients.producer(config, opts) -> Producer | nil, err. `config` is a table
-- of librdkafka properties (and qhost.queue.full.timeout.ms and
-- qhost.produce.batch, see host/kafka_producer.c; a transactional.id makes
-- it transactional). opts.flush_reports_failures = false: flush only says
-- whether everything queued was delivered, and the caller takes the failed
-- deliveries with take_failures, to decide per message (the run loop's
-- checkpoint). The default (true) also makes flush fail on failed
-- deliveries since the last take, taking them, as Quix's producer raises
-- them at flush; the run loop of today relies on it until it takes them
-- itself. clients.deliver works with either.
function clients.producer(config, opts)
  local handle, err = kafka.producer(config)
  if not handle then return nil, err end
  local ptr = ffi.cast("qh_producer *", handle:ptr())
  local fold = not (opts and opts.flush_reports_failures == false)
  return setmetatable({ handle = handle, ptr = ptr, flush_reports_failures = fold }, Producer)
end

-- One header for the produce: name, value; nil, err when it cannot be one
-- (the text of clients.headers_problem).
local function hold_header(n, name, value)
  if n >= MAX_HEADERS then return nil, "more than " .. MAX_HEADERS .. " headers" end
  if type(name) ~= "string" then return nil, "a header name must be a string, got " .. type(name) end
  if value ~= nil and type(value) ~= "string" then
    -- numbers as their text (Quix's producer takes text only; a source's
    -- numbers always went as text here); anything else would be a text of
    -- no use ("table: 0x...", "true"): an error
    if type(value) ~= "number" then
      return nil, string.format("header %q: the value must be a string, got %s", name, type(value))
    end
    value = tostring(value)
  end
  header_anchor[2 * n + 1], header_anchor[2 * n + 2] = name, value
  header_names[n], header_values[n], header_lens[n] = name, value, value and #value or 0
  return true
end

-- Headers are a list of { name, value } pairs (Kafka allows repeats) or a
-- map name -> value. Values are strings or numbers (as their text); nil in
-- a pair is a null header. Returns the count, the strings held in
-- header_anchor (release_headers), or nil, err (nothing held): a table that
-- is no headers is an error, never headers with something dropped.
local function fill_headers(headers)
  if type(headers) ~= "table" then return nil, "must be a table, got " .. type(headers) end
  local n, ok, err = 0, true, nil
  local listed = #headers
  if listed > 0 or next(headers) == nil then
    for i = 1, listed do
      local pair = headers[i]
      if type(pair) ~= "table" then
        ok, err = nil, string.format("item %d must be a { name, value } pair, got %s", i, type(pair))
      else
        ok, err = hold_header(n, pair[1], pair[2])
      end
      if not ok then release_headers(n); return nil, err end
      n = n + 1
    end
    -- Named headers beside the list: more keys than 1..listed (counted:
    -- next(headers, listed) alone misses keys stored before it).
    if listed > 0 then
      local count = 0
      for _ in pairs(headers) do count = count + 1 end
      if count > listed then
        local extra
        for k in pairs(headers) do
          if type(k) ~= "number" or k < 1 or k > listed or k ~= math.floor(k) then extra = k; break end
        end
        release_headers(n)
        return nil, string.format("mix a list of pairs with named headers (%s)", tostring(extra))
      end
    end
  else
    for name, value in pairs(headers) do
      ok, err = hold_header(n, name, value)
      if not ok then release_headers(n); return nil, err end
      n = n + 1
    end
  end
  return n
end

-- clients.headers_problem(headers) -> nil, or what makes them no headers
-- (fill_headers' checks, for a caller that refuses them before producing).
function clients.headers_problem(headers)
  local n, err = fill_headers(headers)
  if not n then return err end
  release_headers(n)
  return nil
end

-- producer:produce(topic, value, key, partition, timestamp_ms, headers,
-- value_len) -> true | nil, err, code. value and key are strings (or nil);
-- value may also be the address of value_len bytes (a number), copied
-- before this returns. The result is about this message only: it is
-- queued (or held, with qhost.produce.batch: a refusal at its hand-over is
-- then a failed delivery), or it is not (err, and the rd_kafka_resp_err_t
-- code). Delivery reports are served as it goes, but an earlier message's
-- failed delivery is never returned here (nor does it keep this message
-- from being sent): it is recorded, for take_failures.
-- (The C side serves delivery reports as it goes, every 64th produce.)
function Producer:produce(topic, value, key, partition, timestamp, headers, value_len)
  local ptr = self.ptr
  local nh = 0
  if headers ~= nil then
    local herr
    nh, herr = fill_headers(headers)
    if not nh then return nil, "produce to " .. topic .. ": " .. herr end
  end
  if value_len and type(value) == "number" then value = cast(CHAR_PTR, value) end
  local rc = C.qh_ffi_produce(ptr, topic, partition or -1,
    key, key and #key or 0, value, value_len or value and #value or 0,
    timestamp or 0, nh, header_names, header_values, header_lens)
  if nh > 0 then release_headers(nh) end
  if rc ~= 0 then return nil, ffi.string(C.qh_ffi_producer_errstr(ptr)), rc end
  return true
end

-- producer:take_failures() -> nil, or the deliveries that failed since the
-- last take: { { topic =, partition =, key = (its first 256 bytes; nil for
-- a null key), key_truncated = true|nil, error = text, code = n }, ...,
-- dropped = n (only when more failed than the 64 kept) }. A count check
-- through the FFI when there are none.
function Producer:take_failures()
  if C.qh_ffi_producer_failures(self.ptr) == 0 then return nil end
  return self.handle:take_failures()
end

local function printable(bytes)
  return (bytes:gsub("[^\32-\126]", function(c) return string.format("\\x%02x", c:byte()) end))
end

-- clients.describe_failures(failures) -> one line for a take_failures
-- list: the first failure with its topic, partition and key, and how many
-- more there were.
function clients.describe_failures(failures)
  local f = failures[1]
  local text = string.format("delivery to %s [%d] failed: %s", f.topic, f.partition, f.error)
  if f.key then text = text .. string.format(' (key "%s%s")', printable(f.key), f.key_truncated and "..." or "") end
  local more = #failures - 1 + (failures.dropped or 0)
  if more > 0 then text = text .. string.format("; %d more deliveries failed", more) end
  return text
end

-- producer:prepare(topic): fetch the topic's metadata now, not at the
-- first message (which would then wait up to librdkafka's 1 s topic scan).
function Producer:prepare(topic)
  C.qh_ffi_producer_topic(self.ptr, topic)
end

function Producer:poll(timeout_ms)
  return C.qh_ffi_producer_poll(self.ptr, timeout_ms or 0)
end

-- producer:flush(timeout_s = 10) -> true | nil, err: waits up to timeout
-- seconds for every queued message; err says how many were not delivered.
-- With flush_reports_failures (the default) a failed delivery since the
-- last take also makes it nil, err (describe_failures), and is taken.
function Producer:flush(timeout)
  local remaining = self.handle:flush(timeout or 10)
  if self.flush_reports_failures then
    local failures = self:take_failures()
    if failures then return nil, clients.describe_failures(failures) end
  end
  if remaining > 0 then
    return nil, string.format("flush timed out: %d messages not delivered", remaining)
  end
  return true
end

-- clients.deliver(producer, timeout_s) -> true | nil, err: waits for
-- everything produced so far, and says whether all of it was delivered:
-- err names what was not (still queued at the timeout, or failed
-- deliveries, described), whichever way the producer reports failures.
-- The source side's flush (Quix raises a failed delivery at flush).
function clients.deliver(producer, timeout)
  local ok, err = producer:flush(timeout)
  if not ok then return nil, err end
  if producer.flush_reports_failures == false then
    local failures = producer:take_failures()
    if failures then return nil, clients.describe_failures(failures) end
  end
  return true
end

-- producer:in_flight() -> messages queued or in flight, not yet reported.
function Producer:in_flight()
  return self.handle:outq_len()
end

function Producer:take_errors() return self.handle:take_errors() end

-- producer:delivered() -> { { topic =, partition =, count = }, ... }: what
-- the broker acknowledged since the producer was made (the app's metrics).
function Producer:delivered() return self.handle:delivered() end

-- Transactions (exactly-once), for a producer whose config has a
-- transactional.id; on any other each returns nil, err, "fatal". Each
-- returns true, or nil, err, kind: "retriable" (make the same call again),
-- "abortable" (abort_transaction, then process again from the last
-- committed offsets) or "fatal" (the producer cannot go on: fenced by a
-- newer instance with its transactional.id, or the call was a misuse; stop).
-- timeout_s nil: librdkafka's own bound, from transaction.timeout.ms.
-- host/kafka_txn.c documents each call. The embedded broker accepts them
-- all but isolates nothing: aborted messages stay visible to read_committed
-- consumers, and the offsets of a transaction are not committed.
--   producer:init_transactions(timeout_s)          once, before the first
--   producer:begin_transaction()
--   producer:send_offsets_to_transaction(consumer, offsets, timeout_s)
--       offsets: { { topic =, partition =, offset = next offset }, ... },
--       committed for the consumer's group if the transaction commits
--   producer:commit_transaction(timeout_s)         flushes its messages first
--   producer:abort_transaction(timeout_s)
function Producer:init_transactions(timeout) return self.handle:init_transactions(timeout) end
function Producer:begin_transaction() return self.handle:begin_transaction() end
function Producer:send_offsets_to_transaction(consumer, offsets, timeout)
  -- A clients.consumer, or the qhost.kafka consumer behind one.
  return self.handle:send_offsets_to_transaction(consumer.handle or consumer, offsets, timeout)
end
function Producer:commit_transaction(timeout) return self.handle:commit_transaction(timeout) end
function Producer:abort_transaction(timeout) return self.handle:abort_transaction(timeout) end

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

-- The rest is the C module's (host/kafka_consumer.c documents each): subscribe,
-- assign, take_events, assignment, resolve_start(partitions, timeout_s),
-- finish_assign(partitions), finish_revoke(partitions), store_offsets,
-- commit, committed, watermarks, positions, pause, resume, take_errors,
-- fetch_wakes, close.
for _, name in ipairs({ "subscribe", "assign", "take_events", "assignment", "resolve_start",
                        "finish_assign", "finish_revoke", "store_offsets", "commit",
                        "committed", "watermarks", "positions", "pause", "resume", "take_errors",
                        "fetch_wakes", "close" }) do
  Consumer[name] = function(self, ...) return self.handle[name](self.handle, ...) end
end

clients.admin = kafka.admin
clients.mock_cluster = kafka.mock_cluster

return clients
