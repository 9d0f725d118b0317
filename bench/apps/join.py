# Workload "join" (Quix Streams): the same as bench/apps/join.lua.
#   python join.py BROKER LEFT RIGHT OUTPUT GROUP STATE_DIR
import sys

from quixstreams import Application
from quixstreams.models import TopicConfig

broker, left_name, right_name, output_name, group, state_dir = sys.argv[1:7]

app = Application(
    broker_address=broker, consumer_group=group, auto_offset_reset="earliest",
    state_dir=state_dir, loglevel="WARNING",
)
config = TopicConfig(num_partitions=8, replication_factor=1)
left = app.dataframe(app.topic(left_name, config=config))
right = app.dataframe(app.topic(right_name, config=config))
out = app.topic(output_name, config=config)

left.join_asof(right, how="inner", on_merge="keep-left").to_topic(out)
app.run()
