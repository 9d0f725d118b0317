-- The window conformance pipelines, in qhost (windows.py line by line):
-- one input topic, a branch per case, each producing to its own output
-- topic OUTPUT_PREFIX-<case>.
--   qhost run windows.lua BROKER INPUT OUTPUT_PREFIX GROUP STATE_DIR
local qhost = require("qhost")
local A = qhost.agg
local broker, input_name, prefix, group, state_dir = unpack(arg)

local app = qhost.Application{
  broker_address = broker, consumer_group = group, auto_offset_reset = "earliest",
  state_dir = state_dir, loglevel = "WARNING",
}
local source = app:topic(input_name, { value_deserializer = "json" })

local function out(case)
  return app:topic(prefix .. "-" .. case, { value_serializer = "json" })
end

local sdf = app:dataframe(source)
local values = sdf:apply(function(v) return v.v end)

-- tumbling sum, final
values:tumbling_window{ duration_ms = 10000 }:sum():final():to_topic(out("tumbling-sum"))
-- tumbling, several aggregations, current
sdf:tumbling_window{ duration_ms = 5000, grace_ms = 2000 }
  :agg{ count = A.Count(), first = A.First("v"), last = A.Last("v"), max = A.Max("v"), mean = A.Mean("v"),
        min = A.Min("x"), sum = A.Sum("v") }
  :current():to_topic(out("tumbling-agg"))
-- hopping mean with grace (late messages dropped)
values:hopping_window{ duration_ms = 10000, step_ms = 2500, grace_ms = 3000 }:mean():final()
  :to_topic(out("hopping-mean"))
-- sliding count, final
sdf:sliding_window{ duration_ms = 4000, grace_ms = 1000 }:count():final():to_topic(out("sliding-count"))
-- collect, closed by partition
sdf:tumbling_window{ duration_ms = 5000 }:collect():final{ closing_strategy = "partition" }
  :to_topic(out("collect-partition"))
-- count windows
sdf:tumbling_count_window{ count = 5 }:agg{ n = A.Count(), sum = A.Sum("v") }:final():to_topic(out("tumbling-count"))
values:hopping_count_window{ count = 6, step = 2 }:mean():final():to_topic(out("hopping-count"))
sdf:sliding_count_window{ count = 3 }:agg{ vs = A.Collect("v") }:final():to_topic(out("sliding-count-window"))
-- an early close: after_update ends a window once its sum reaches 300
values:tumbling_window{ duration_ms = 20000, after_update = function(agg) return agg >= 300 end }
  :sum():final():to_topic(out("trigger"))

app:run{ timeout = 15 }
