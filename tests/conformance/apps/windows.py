# The window conformance pipelines, in Quix Streams (windows.lua line by
# line): one input topic, a branch per case, each producing to its own
# output topic OUTPUT_PREFIX-<case>.
#   python windows.py BROKER INPUT OUTPUT_PREFIX GROUP STATE_DIR
import sys

from quixstreams import Application
from quixstreams.dataframe.windows import Collect, Count, First, Last, Max, Mean, Min, Sum

broker, input_name, prefix, group, state_dir = sys.argv[1:6]

app = Application(
    broker_address=broker, consumer_group=group, auto_offset_reset="earliest",
    state_dir=state_dir, loglevel="WARNING",
)
# Keys stay bytes: Quix 3.28.1's triggers (after_update) fail on str keys
# (WindowedRocksDBPartitionTransaction.delete_window gets the key unserialized).
source = app.topic(input_name, value_deserializer="json")


def out(case):
    return app.topic(prefix + "-" + case, value_serializer="json")


sdf = app.dataframe(source)
values = sdf.apply(lambda v: v["v"])

# tumbling sum, final
values.tumbling_window(duration_ms=10000).sum().final().to_topic(out("tumbling-sum"))
# tumbling, several aggregations, current (agg's names in sorted order, as qhost writes them)
(sdf.tumbling_window(duration_ms=5000, grace_ms=2000)
    .agg(count=Count(), first=First("v"), last=Last("v"), max=Max("v"), mean=Mean("v"), min=Min("x"), sum=Sum("v"))
    .current().to_topic(out("tumbling-agg")))
# hopping mean with grace (late messages dropped)
values.hopping_window(duration_ms=10000, step_ms=2500, grace_ms=3000).mean().final().to_topic(out("hopping-mean"))
# sliding count, final
sdf.sliding_window(duration_ms=4000, grace_ms=1000).count().final().to_topic(out("sliding-count"))
# collect, closed by partition
sdf.tumbling_window(duration_ms=5000).collect().final(closing_strategy="partition").to_topic(out("collect-partition"))
# count windows
sdf.tumbling_count_window(count=5).agg(n=Count(), sum=Sum("v")).final().to_topic(out("tumbling-count"))
values.hopping_count_window(count=6, step=2).mean().final().to_topic(out("hopping-count"))
sdf.sliding_count_window(count=3).agg(vs=Collect("v")).final().to_topic(out("sliding-count-window"))
# an early close: after_update ends a window once its sum reaches 300
(values.tumbling_window(duration_ms=20000, after_update=lambda agg, value, key, ts, headers: agg >= 300)
    .sum().final().to_topic(out("trigger")))

app.run(timeout=15)
