-- qhost.runtime.kafka_transaction: the Kafka transactions of exactly-once
-- (processing_guarantee = "exactly-once", as Quix's). The app's producer has
-- a transactional.id of its own (the consumer group and a random part, as
-- Quix makes it); a transaction is open from the start and after every
-- checkpoint, and a checkpoint commits the outputs, the changelog records
-- and the consumed offsets in it at once (send_offsets_to_transaction, then
-- commit). A call librdkafka says to retry is retried; one that needs the
-- transaction aborted aborts it and stops the app: nothing of it becomes
-- visible to read_committed consumers, the offsets stay where they were,
-- and a restart processes those messages again.
local log = require("qhost.log")

local M = {}

local RETRIES = 5

-- A transactional.id for this process: `group`-<16 random hex digits>.
function M.new_id(group)
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(8)
  f:close()
  return group .. "-" .. bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end)
end

-- Calls producer[method](producer, ...), retrying what librdkafka says is
-- retriable; an abortable failure aborts the transaction. Raises on
-- anything but success.
local function call(producer, method, ...)
  local ok, err, kind
  for _ = 1, RETRIES do
    ok, err, kind = producer[method](producer, ...)
    if ok then return end
    if kind ~= "retriable" then break end
    log.warning("exactly-once: %s failed, retrying: %s", method, tostring(err))
  end
  if kind == "abortable" then
    local aok, aerr = producer:abort_transaction(30)
    error(string.format("exactly-once: %s failed (%s); the transaction was %s: nothing of this checkpoint "
      .. "is committed, and its messages are processed again after a restart", method, tostring(err),
      aok and "aborted" or ("not aborted either: " .. tostring(aerr))), 0)
  end
  error(string.format("exactly-once: %s failed: %s", method, tostring(err)), 0)
end

-- Before the first output: the producer's transactions, and the first one.
function M.start(producer)
  call(producer, "init_transactions", 60)
  call(producer, "begin_transaction")
end

-- The checkpoint's commit: the offsets into the transaction, the
-- transaction committed (it delivers its messages first), the next begun.
function M.commit(producer, consumer, offsets)
  if consumer and #offsets > 0 then call(producer, "send_offsets_to_transaction", consumer, offsets, 60) end
  call(producer, "commit_transaction", 60)
  log.debug("exactly-once: transaction committed with %d partition offsets", #offsets)
  call(producer, "begin_transaction")
end

-- A lost assignment: the open transaction holds work of partitions this
-- instance no longer owns; it is aborted and the app stops.
function M.abort(producer, why)
  local ok, err = producer:abort_transaction(30)
  error(string.format("exactly-once: %s; the open transaction was %s, nothing of it is committed", why,
    ok and "aborted" or ("not aborted: " .. tostring(err))), 0)
end

return M
