# Workload "stateful" (Quix Streams): the same as bench/apps/stateful.lua.
#   python stateful.py BROKER INPUT OUTPUT GROUP STATE_DIR
import sys

from quixstreams import Application
from quixstreams.models import TopicConfig

broker, input_name, output_name, group, state_dir = sys.argv[1:6]

app = Application(
    broker_address=broker, consumer_group=group, auto_offset_reset="earliest",
    state_dir=state_dir, loglevel="WARNING",
)
config = TopicConfig(num_partitions=8, replication_factor=1)
events = app.topic(input_name, config=config)
out = app.topic(output_name, config=config)


def count(_, state):
    n = state.get("count", 0) + 1
    state.set("count", n)
    return n


sdf = app.dataframe(events)
sdf = sdf.apply(count, stateful=True)
sdf.to_topic(out)
app.run()
