-- qhost.windows.count: tumbling, hopping and sliding count windows (Quix's
-- CountWindow, quixstreams/dataframe/windows/count_based.py).
--
-- Per message key, the open windows are kept as one value ({ windows =
-- { { count, start, end, aggregations, collection_start_id }, ... } }): a
-- window starts with a message (hopping: every `step` messages of the
-- oldest open one; sliding: step 1), counts each message, and closes with
-- its `count`th. Its start and end are the smallest and largest timestamps
-- it saw. Collected values are numbered per key from the window's
-- collection_start_id, so a window reads its values by number.
local codec = require("qhost.codec")
local windows = require("qhost.windows")

local through_json = windows.through_json
local null, array_mt = codec.null, codec.array_mt

local count = {}

-- count.compile(win, nxt) -> process(tx, value, key, prefix, timestamp, headers)
function count.compile(win, nxt)
  local max_count, step = win.max_count, win.step or nil
  local final = win.mode == "final"
  local ops = win.ops
  local aggregate, collect, copy = ops.aggregate, ops.collect, ops.copy
  local initialize, aggregate_value, collect_value, results =
    ops.initialize, ops.aggregate_value, ops.collect_value, ops.results
  -- each window has its own state: built-in aggregations may update it in place
  if not copy and ops.aggregate_into then aggregate_value = ops.aggregate_into end
  local name = win.name
  local EMPTY = {}

  local function new_window(timestamp, start_id)
    local a = initialize()
    if a == nil then a = null end
    return { count = 0, start = timestamp, ["end"] = timestamp, aggregations = a, collection_start_id = start_id }
  end

  local function aggregations(window)
    local a = window.aggregations
    if a == null then return nil end
    return a
  end

  return function(tx, value, key, prefix, timestamp)
    local data = tx:get_data(prefix) or { windows = setmetatable({}, array_mt) }
    local open = data.windows
    if #open == 0 then
      -- (an empty list read back from JSON must stay a list)
      open = setmetatable({}, array_mt)
      data.windows = open
    end
    local start_id = -1
    if #open == 0 then
      start_id = 0
      open[1] = new_window(timestamp, start_id)
    elseif step and open[1].count % step == 0 then
      if collect then start_id = open[1].collection_start_id + open[1].count end
      open[#open + 1] = new_window(timestamp, start_id)
    end
    if collect then
      if start_id == -1 then start_id = open[1].collection_start_id + open[1].count end
      tx:add_to_collection(prefix, collect_value(value), start_id)
    end

    local out, to_remove
    for i = 1, #open do
      local window = open[i]
      window.count = window.count + 1
      if timestamp < window.start then
        window.start = timestamp
      elseif timestamp > window["end"] then
        window["end"] = timestamp
      end
      if aggregate then
        local a = aggregate_value(aggregations(window), value, timestamp)
        if copy then a = through_json(a, "the window's aggregation (" .. name .. ")") end
        window.aggregations = a == nil and null or a
        if not final then
          out = out or {}
          out[#out + 1] = results(aggregations(window), EMPTY, window.start, window["end"])
        end
      end
      if window.count >= max_count then
        to_remove = to_remove or {}
        to_remove[#to_remove + 1] = i
        local collected = EMPTY
        if collect then
          local first = window.collection_start_id
          collected = tx:get_from_collection(prefix, first, first + max_count)
          -- tumbling: everything up to the window's end goes; hopping: only
          -- the first step (the next windows need the rest)
          tx:delete_from_collection(prefix, first + (step or max_count), step == nil and 0 or nil)
        end
        if final then
          out = out or {}
          out[#out + 1] = results(aggregations(window), collected, window.start, window["end"])
        end
      end
    end
    if to_remove then
      -- As Quix's `del windows[i]` for each i in turn.
      for _, i in ipairs(to_remove) do table.remove(open, i) end
    end
    tx:set_data(prefix, data)
    if out then
      for i = 1, #out do nxt(out[i], key, out[i].start, nil) end
    end
  end
end

return count
