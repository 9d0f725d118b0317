-- qhost.runtime.state.transaction: one checkpoint interval's changes to one
-- store partition (Quix's PartitionTransaction). Writes stay in an
-- in-memory overlay that reads see first; at the checkpoint the overlay is
-- produced to the changelog (changelog_records) and then written to the
-- database in one atomic batch (flush). Keys and values are bytes here;
-- qhost.state turns user keys and values into them.
local transaction = {}

local Transaction = {}
Transaction.__index = Transaction

-- The overlay's mark for a key deleted in this interval.
local DELETED = setmetatable({}, { __tostring = function() return "DELETED" end })
transaction.DELETED = DELETED

-- transaction.new(partition): partition is a store partition (qhost's
-- runtime.state.partition, or a fake with get(key) and write(puts,
-- deletes, changelog_offset)).
function transaction.new(partition)
  return setmetatable({ partition = partition, updates = {}, order = {}, bytes = 0 }, Transaction)
end

-- Bytes stored for key, or nil. The overlay first, then the database.
function Transaction:get(key)
  local v = self.updates[key]
  if v == DELETED then return nil end
  if v ~= nil then return v end
  return self.partition:get(key)
end

function Transaction:set(key, value)
  local updates = self.updates
  if updates[key] == nil then self.order[#self.order + 1] = key end
  updates[key] = value
  self.bytes = self.bytes + #key + #value
end

function Transaction:delete(key)
  local updates = self.updates
  if updates[key] == nil then self.order[#self.order + 1] = key end
  updates[key] = DELETED
  self.bytes = self.bytes + #key
end

function Transaction:exists(key)
  return self:get(key) ~= nil
end

-- Whether anything changed in this interval.
function Transaction:empty()
  return #self.order == 0
end

-- The changes in the order they were first made: a list of { key, value }
-- (value nil for a delete), what the changelog gets.
function Transaction:changes()
  local list = {}
  for i, key in ipairs(self.order) do
    local v = self.updates[key]
    list[i] = { key, v ~= DELETED and v or nil }
  end
  return list
end

-- Writes the overlay to the database in one batch, with the changelog
-- offset it now holds, and starts a new interval.
function Transaction:flush(changelog_offset)
  local puts, deletes = {}, {}
  for _, key in ipairs(self.order) do
    local v = self.updates[key]
    if v == DELETED then
      deletes[#deletes + 1] = key
    else
      puts[#puts + 1] = key
      puts[#puts + 1] = v
    end
  end
  self.partition:write(puts, deletes, changelog_offset)
  self.updates, self.order, self.bytes = {}, {}, 0
end

-- Forgets the interval's changes (its messages will be processed again).
function Transaction:discard()
  self.updates, self.order, self.bytes = {}, {}, 0
end

return transaction
