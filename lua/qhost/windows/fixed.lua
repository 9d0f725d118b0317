-- qhost.windows.fixed: tumbling and hopping time windows (Quix's
-- FixedTimeWindow, quixstreams/dataframe/windows/time_based.py).
--
-- A message at timestamp t belongs to the windows [start, start + duration)
-- with start a multiple of the step (the duration for tumbling) and
-- t - duration < start <= t, start >= 0. A window is closed once the
-- latest timestamp seen (of the key, or with closing_strategy "partition"
-- the end of the last windows closed in the partition) minus grace_ms has
-- reached its end; a message for a closed window is late: on_late decides
-- whether it is logged, and it is dropped. before_update(aggregated, value,
-- key, timestamp, headers) and after_update(...) returning true close a
-- window early (the state they see is the aggregation state, as Quix's).
local codec = require("qhost.codec")
local windowed = require("qhost.runtime.state.windowed")
local windows = require("qhost.windows")

local json_decode = codec.json_decode
local through_json, late = windows.through_json, windows.late
local value_of, W_S, W_E = windowed.value_of, windowed.W_S, windowed.W_E

local fixed = {}

-- fixed.compile(win, nxt, ctx) -> process(tx, value, key, prefix, timestamp, headers)
function fixed.compile(win, nxt, ctx)
  local duration, grace = win.duration, win.grace
  local step = win.step or duration
  local by_partition = win.closing == "partition"
  local final = win.mode == "final"
  local ops = win.ops
  local aggregate, collect, copy = ops.aggregate, ops.collect, ops.copy
  local initialize, aggregate_value, collect_value, results =
    ops.initialize, ops.aggregate_value, ops.collect_value, ops.results
  -- A window's state is its own here (no other window shares it), so
  -- built-in aggregations may update it in place.
  if not copy and ops.aggregate_into then aggregate_value = ops.aggregate_into end
  local before, after = win.before_update, win.after_update
  local name = win.name
  local EMPTY = {}

  local function emit(list, key)
    if not list then return end
    for i = 1, #list do
      local r = list[i]
      nxt(r, key, r.start, nil)
    end
  end

  -- One window of the message: late, or triggered, or updated. Returns
  -- the lists of updated and triggered results (made when first needed).
  local function one(tx, value, key, prefix, timestamp, headers, s, max_start, max_end, updated, triggered)
    local e = s + duration
    if s <= max_start then
      late(win, ctx, value, key, timestamp, max_end - timestamp, s, e)
      return updated, triggered
    end
    local aggregated = nil
    if aggregate then
      local current = tx:get_window(prefix, s, e)
      if current == nil then
        current = initialize()
      elseif copy then
        current = through_json(current, "the window's aggregation")   -- user code gets its own copy
      end
      if before and before(current, value, key, timestamp, headers) then
        -- closed before the value is added
        local collected = collect and tx:get_from_collection(prefix, s, e) or EMPTY
        triggered = triggered or {}
        triggered[#triggered + 1] = results(current, collected, s, e)
        tx:delete_window(prefix, s, e)
        return updated, triggered
      end
      aggregated = aggregate_value(current, value, timestamp)
      if after and after(aggregated, value, key, timestamp, headers) then
        local collected = EMPTY
        if collect then
          collected = tx:get_from_collection(prefix, s, e)
          collected[#collected + 1] = collect_value(value)
        end
        triggered = triggered or {}
        triggered[#triggered + 1] = results(aggregated, collected, s, e)
        tx:delete_window(prefix, s, e)
        return updated, triggered
      end
      if not final then
        updated = updated or {}
        updated[#updated + 1] = results(aggregated, EMPTY, s, e)
      end
    elseif collect and (before or after) then
      local old = tx:get_from_collection(prefix, s, e)
      if copy then old = through_json(old, "the collected values") or {} end
      if before and before(old, value, key, timestamp, headers) then
        triggered = triggered or {}
        triggered[#triggered + 1] = results(nil, old, s, e)
        tx:delete_window(prefix, s, e)
        return updated, triggered
      elseif after then
        local new = {}
        for j = 1, #old do new[j] = old[j] end
        new[#new + 1] = collect_value(value)
        if after(new, value, key, timestamp, headers) then
          triggered = triggered or {}
          triggered[#triggered + 1] = results(nil, new, s, e)
          tx:delete_window(prefix, s, e)
          return updated, triggered
        end
      end
    end
    if copy then aggregated = through_json(aggregated, "the window's aggregation (" .. name .. ")") end
    tx:update_window(prefix, s, e, aggregated, timestamp)
    return updated, triggered
  end

  return function(tx, value, key, prefix, timestamp, headers)
    local latest
    if by_partition then
      latest = tx:get_latest_expired("")
    else
      latest = tx:get_latest_timestamp(prefix)
    end
    if timestamp > latest then latest = timestamp end
    local max_end = latest - grace
    local max_start = max_end - duration

    -- The windows of the message, earliest first (Quix's get_window_ranges):
    -- starts are multiples of the step with timestamp - duration < start <=
    -- timestamp, start >= 0. Tumbling: the one window, without a loop.
    local last_start = timestamp - timestamp % step
    local updated, triggered
    if step == duration then
      if last_start >= 0 then
        updated, triggered = one(tx, value, key, prefix, timestamp, headers, last_start, max_start, max_end)
      end
    else
      local n = 0
      while last_start - n * step > timestamp - duration and last_start - n * step >= 0 do n = n + 1 end
      for i = n - 1, 0, -1 do
        updated, triggered = one(tx, value, key, prefix, timestamp, headers, last_start - i * step, max_start,
          max_end, updated, triggered)
      end
    end

    if collect then tx:add_to_collection(prefix, collect_value(value), timestamp) end

    -- Expiry, before any result goes on (Quix's order: the closed windows,
    -- then the ones a trigger closed; or with current(), the updates).
    if by_partition then
      local expired = tx:expire_all_windows(max_end, step, collect)
      if expired and final then
        local string_key = type(key) == "string"
        for i = 1, #expired do
          local x = expired[i]
          local k = x[5]
          if not string_key then k = json_decode(k) end
          local r = results(x[3], x[4], x[1], x[2])
          nxt(r, k, x[1], nil)
        end
      end
    else
      local expired, collected = tx:expire_windows(prefix, max_start, true, collect, false)
      if expired and final then
        for i = 1, #expired do
          local w = expired[i]
          local s = w[W_S]
          nxt(results(value_of(w), collected and collected[i], s, w[W_E]), key, s, nil)
        end
      end
    end
    if final then emit(triggered, key) else emit(updated, key) end
  end
end

return fixed
