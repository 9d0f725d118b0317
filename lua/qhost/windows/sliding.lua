-- qhost.windows.sliding: sliding time windows (Quix's SlidingWindow,
-- quixstreams/dataframe/windows/sliding.py), step by step as Quix's.
--
-- Each message has a left window [t - duration, t] (both ends included)
-- and may make a right window [t + 1, t + 1 + duration]; a window's stored
-- value is { max_timestamp, aggregation }, and only windows whose end is
-- their max_timestamp are results (the others exist to seed later ones).
-- Windows of a key are read backwards from the right window's start, and
-- those no later message can reach are deleted.
local windows = require("qhost.windows")
local windowed = require("qhost.runtime.state.windowed")

local through_json, late, value_of = windows.through_json, windows.late, windowed.value_of
local W_S, W_E = windowed.W_S, windowed.W_E
local max = math.max
local null = require("qhost.codec").null

local sliding = {}

-- sliding.compile(win, nxt, ctx) -> process(tx, value, key, prefix, timestamp, headers)
function sliding.compile(win, nxt, ctx)
  local duration, grace = win.duration, win.grace
  local final = win.mode == "final"
  local ops = win.ops
  local aggregate, collect, copy = ops.aggregate, ops.collect, ops.copy
  local initialize, aggregate_value, collect_value, results =
    ops.initialize, ops.aggregate_value, ops.collect_value, ops.results
  local name = win.name
  local EMPTY = {}

  -- Quix's _update_window: stores { max_timestamp, value }, and returns the
  -- result (for current()).
  local function update(tx, prefix, s, e, value, timestamp, max_timestamp)
    if copy then value = through_json(value, "the window's aggregation (" .. name .. ")") end
    tx:update_window(prefix, s, e, { max_timestamp, value == nil and null or value }, timestamp)
    if final then return nil end
    return results(value, EMPTY, s, e)
  end

  -- The stored { max_timestamp, aggregation } of a window record.
  local function stored(w)
    local v = value_of(w)
    local agg_value = v[2]
    if agg_value == null then agg_value = nil end
    -- user code gets its own copy, as from Quix's store
    if copy then agg_value = through_json(agg_value, "the window's aggregation") end
    return v[1], agg_value
  end

  return function(tx, value, key, prefix, timestamp, headers)
    local latest = tx:get_latest_timestamp(prefix)
    if timestamp > latest then latest = timestamp end
    -- Both ends are included: a value at latest - duration - grace still counts.
    local max_end = latest - grace - 1
    local max_start = max_end - duration
    local max_deleted_start = max_start - duration

    local left_start = max(0, timestamp - duration)
    local left_end = timestamp
    if timestamp <= max_start then
      late(win, ctx, value, key, timestamp, max_end + 1 - timestamp, left_start, left_end)
      return
    end

    local right_start = timestamp + 1
    local right_end = right_start + duration
    local right_exists = false
    local starts = { [left_start] = true }
    local updated = {}
    local list = tx:get_windows(prefix, max(0, left_start - duration) - 1, right_start, true)
    local broke = false
    for i = 1, #list do
      local w = list[i]
      local s, e = w[W_S], w[W_E]
      local max_timestamp, aggregation = stored(w)
      starts[s] = true
      if s == right_start then
        right_exists = true
      elseif e > left_end then
        -- the right window, when missing and it would not be empty
        if not right_exists and max_timestamp > timestamp then
          update(tx, prefix, right_start, right_end, aggregation, timestamp, max_timestamp)
          right_exists = true
        end
        if s > max_start then
          max_timestamp = max(timestamp, max_timestamp)
          local r = update(tx, prefix, s, e, aggregate_value(aggregation, value, timestamp), timestamp, max_timestamp)
          if e == max_timestamp then updated[#updated + 1] = r end   -- only left windows are results
        else
          late(win, ctx, value, key, timestamp, max_end + 1 - timestamp, s, e)
        end
      elseif e == left_end then
        -- the right window of the previous message, when missing
        local rs = max_timestamp + 1
        if not starts[rs] and max_timestamp < timestamp then
          update(tx, prefix, rs, rs + duration, aggregate_value(initialize(), value, timestamp), timestamp, timestamp)
        end
        -- the left window exists: updating it is enough
        if s > max_start then
          updated[#updated + 1] = update(tx, prefix, s, e, aggregate_value(aggregation, value, timestamp), timestamp,
            timestamp)
        else
          late(win, ctx, value, key, timestamp, max_end + 1 - timestamp, s, e)
        end
        broke = true
        break
      else -- e < left_end
        local rs = max_timestamp + 1
        if not starts[rs] and rs + duration >= timestamp then
          update(tx, prefix, rs, rs + duration,
            aggregate and aggregate_value(initialize(), value, timestamp) or nil, timestamp, timestamp)
        end
        -- the left window, from the aggregation it falls within
        if left_start > max_timestamp then aggregation = initialize() end
        updated[#updated + 1] = update(tx, prefix, left_start, left_end, aggregate_value(aggregation, value, timestamp),
          timestamp, timestamp)
        -- no earlier window is needed for aggregations any more
        max_deleted_start = math.min(s - 1, max_start)
        broke = true
        break
      end
    end
    if not broke and left_start > max_start then
      updated[#updated + 1] = update(tx, prefix, left_start, left_end,
        aggregate_value(initialize(), value, timestamp), timestamp, timestamp)
    end

    if collect then tx:add_to_collection(prefix, collect_value(value), timestamp) end

    -- The closed windows (built before any is deleted), then the deletion
    -- of what no message can use any more.
    local expired, collected = tx:expire_windows(prefix, max_start, false, collect, true)
    local out
    if expired and final then
      out = {}
      for i = 1, #expired do
        local w = expired[i]
        local v = value_of(w)
        if v[1] == w[W_E] then   -- end == max_timestamp
          local agg_value = v[2]
          if agg_value == null then agg_value = nil end
          out[#out + 1] = results(agg_value, collected and collected[i], w[W_S], w[W_E])
        end
      end
    end
    tx:delete_windows(prefix, max_deleted_start, collect)

    if final then
      if out then
        for i = 1, #out do nxt(out[i], key, out[i].start, nil) end
      end
    else
      for i = #updated, 1, -1 do nxt(updated[i], key, updated[i].start, nil) end
    end
  end
end

return sliding
