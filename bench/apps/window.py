# Workload "window" (Quix Streams): the same as bench/apps/window.lua.
#   python window.py BROKER INPUT OUTPUT GROUP STATE_DIR
import sys

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Mean, Sum
from quixstreams.models import TopicConfig

broker, input_name, output_name, group, state_dir = sys.argv[1:6]

app = Application(
    broker_address=broker, consumer_group=group, auto_offset_reset="earliest",
    state_dir=state_dir, loglevel="WARNING",
)
config = TopicConfig(num_partitions=8, replication_factor=1)
events = app.topic(input_name, config=config)
out = app.topic(output_name, config=config)

sdf = app.dataframe(events)
# The names in sorted order: qhost writes agg's names sorted (a Lua table
# has no order), Quix in keyword order.
sdf = sdf.tumbling_window(duration_ms=1000).agg(count=Count(), mean=Mean("v"), sum=Sum("v")).final()
sdf.to_topic(out)
app.run()
