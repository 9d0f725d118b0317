-- qhost.runtime.flow_control: credit-based flow control on the embedded broker.
-- The embedded broker (librdkafka's mock cluster) keeps at most 5 MiB or
-- 100,000 message sets per partition and silently drops the oldest beyond
-- that. So a source may only be a budget ahead of the app that consumes its
-- topic: the app counts what it has taken out of its consumer into a region
-- of shared memory (host/flow.h) that the source process inherits, and the
-- source's produce waits while what it produced minus what the app took
-- would pass the budget. Loss is then impossible, not unlikely, whatever the
-- speeds: a paused producer cannot overrun anything.
-- Both sides count a message the same way: key + value + header names and
-- values + OVERHEAD bytes (the record's framing in the broker's log).
-- Real Kafka keeps what its retention says: no flow control there.
local ffi = require("ffi")
local flow = require("qhost.flow")
local C = require("qhost.kafka.ffi")

-- host/flow.h's hot path (the region's layout stays C's business).
ffi.cdef[[
typedef struct qh_flow qh_flow;
void qh_ffi_flow_consumed(qh_flow *f, int64_t messages, int64_t bytes);
void qh_ffi_flow_read(const qh_flow *f, int64_t *messages, int64_t *bytes);
]]

local M = {}

-- Well under the mock's limits, even when every message of the budget lands
-- in one partition and each is its own message set.
M.BUDGET = { messages = 20000, bytes = 2 * 1024 * 1024 }
M.OVERHEAD = 64

-- The size of a message as both sides count it. headers: a map or a list
-- of { name, value } pairs (nil for none).
function M.size(key, value, headers)
  local n = M.OVERHEAD + (key and #key or 0) + (value and #value or 0)
  if headers then
    if headers[1] ~= nil then
      for i = 1, #headers do
        local h = headers[i]
        n = n + #tostring(h[1]) + (h[2] ~= nil and #tostring(h[2]) or 0)
      end
    else
      for name, v in pairs(headers) do n = n + #tostring(name) + #tostring(v) end
    end
  end
  return n
end

-- App side -----------------------------------------------------------------

local Region = {}
Region.__index = Region

-- A new region for one source: region.fd goes to the source's process
-- (spawn's share_fd), region:consumed(n, bytes) after each batch.
function M.new_region()
  local handle, err = flow.create()
  if not handle then return nil, err end
  return setmetatable({ handle = handle, fd = handle:fd(), ptr = ffi.cast("qh_flow *", handle:ptr()) }, Region)
end

function Region:consumed(messages, bytes)
  C.qh_ffi_flow_consumed(self.ptr, messages, bytes)
end

function Region:close()
  self.handle:close()
end

-- Source side --------------------------------------------------------------

local Gate = {}
Gate.__index = Gate

local consumed_messages = ffi.new("int64_t[1]")
local consumed_bytes = ffi.new("int64_t[1]")

-- The gate of a source process whose app gave it a region (as its fd
-- QHOST_SHARE_FD), or nil when it has none (real Kafka, nobody consuming).
function M.open_gate(budget)
  local fd = tonumber(os.getenv("QHOST_SHARE_FD") or "")
  if not budget or not fd or fd < 0 then return nil end
  local handle, err = flow.open(fd)
  if not handle then error("source process: " .. err, 0) end
  return setmetatable({ handle = handle, ptr = ffi.cast("qh_flow *", handle:ptr()),
                        budget_messages = budget.messages, budget_bytes = budget.bytes,
                        produced_messages = 0, produced_bytes = 0, waits = 0 }, Gate)
end

-- gate:admit(size, producer): returns once a message of `size` may be
-- produced, serving the producer's delivery reports while it waits. A
-- message is always admitted when nothing is unread (one larger than the
-- whole budget included); a stop being requested ends the wait, so the
-- source can stop (the app consumes no more then anyway).
function Gate:admit(size, producer)
  local bm, bb = self.budget_messages, self.budget_bytes
  while true do
    C.qh_ffi_flow_read(self.ptr, consumed_messages, consumed_bytes)
    local unread_messages = self.produced_messages - tonumber(consumed_messages[0])
    local unread_bytes = self.produced_bytes - tonumber(consumed_bytes[0])
    if unread_messages <= 0 or (unread_messages < bm and unread_bytes + size <= bb) then break end
    if C.qh_ffi_stop_requested() > 0 then break end
    self.waits = self.waits + 1
    producer:poll(1)
  end
  self.produced_messages = self.produced_messages + 1
  self.produced_bytes = self.produced_bytes + size
end

function Gate:close()
  self.handle:close()
end

return M
