-- The join conformance pipelines, in qhost (joins.py line by line): a left
-- and a right topic, a branch per case, each producing to its own output
-- topic OUTPUT_PREFIX-<case>.
--   qhost run joins.lua BROKER LEFT RIGHT OUTPUT_PREFIX GROUP STATE_DIR SQLITE_PATH
local qhost = require("qhost")
local L = qhost.lookups
local broker, left_name, right_name, prefix, group, state_dir, db_path = unpack(arg)

local app = qhost.Application{
  broker_address = broker, consumer_group = group, auto_offset_reset = "earliest",
  state_dir = state_dir, loglevel = "WARNING",
}
local left_topic = app:topic(left_name, { value_deserializer = "json" })
local right_topic = app:topic(right_name, { value_deserializer = "json" })

local function out(case)
  return app:topic(prefix .. "-" .. case, { value_serializer = "json" })
end

local left = app:dataframe(left_topic)
local right = app:dataframe(right_topic)

-- as-of, inner, keep-left (the default grace: 7 days)
left:join_asof(right, { how = "inner", on_merge = "keep-left" }):to_topic(out("asof-inner"))

-- as-of, left, a merge function and a grace of 2 s
local function merge_lr(lv, rv)
  return { l = lv.l, r = rv ~= nil and rv.r or qhost.json.null }
end
left:join_asof(right, { how = "left", on_merge = merge_lr, grace_ms = 2000, name = "asof2" })
  :to_topic(out("asof-left"))

-- interval, inner, keep-right, 1.5 s back and 0.8 s forward
left:join_interval(right, { how = "inner", on_merge = "keep-right", backward_ms = 1500, forward_ms = 800,
  name = "iv1" }):to_topic(out("interval-inner"))

-- interval, outer, keep-left, 0.5 s both ways
left:join_interval(right, { how = "outer", on_merge = "keep-left", backward_ms = 500, forward_ms = 500,
  name = "iv2" }):to_topic(out("interval-outer"))

-- lookup against one SQLite file, on a column of the value
local lookup = L.SQLiteLookup{ path = db_path }
local fields = {
  device = L.SQLiteLookupField{ table = "devices", columns = { "name", "model", "rev" }, on = "id" },
  history = L.SQLiteLookupField{ table = "devices_history", columns = { "rev", "note" }, on = "id", order_by = "rev",
    order_by_direction = "DESC", first_match_only = false },
  -- Its parameters change with each message while the cache is per `on`
  -- value: cached, the first message of a device read would decide for all
  -- (and which is first depends on how the two partitions interleave), so
  -- ttl = 0 queries every time.
  site = L.SQLiteLookupQueryField{ query = "SELECT site, rack FROM sites WHERE device = :dev AND rack >= :l % 3",
    ttl = 0 },
  -- Cached: its parameter is the `on` column.
  site_top = L.SQLiteLookupQueryField{ query = "SELECT site, rack FROM sites WHERE device = :dev ORDER BY rack DESC" },
}
local looked = left:apply(function(v) return v end)
looked = looked:join_lookup(lookup, fields, { on = "dev" })
looked:to_topic(out("lookup"))

app:run{ timeout = 15 }
