# Workload 1 (Quix Streams): the same pipeline as bench/apps/pipeline.lua.
#   python pipeline.py BROKER INPUT OUTPUT GROUP
import sys

from quixstreams import Application
from quixstreams.models import TopicConfig

broker, input_name, output_name, group = sys.argv[1:5]

app = Application(
    broker_address=broker, consumer_group=group,
    auto_offset_reset="earliest", loglevel="WARNING",
)
config = TopicConfig(num_partitions=8, replication_factor=1)
orders = app.topic(input_name, config=config)
out = app.topic(output_name, config=config)


def add_total(order):
    order["total"] = int(order["qty"] * order["price"] * 100 + 0.5)
    return order


sdf = app.dataframe(orders)
sdf = sdf.filter(lambda order: order["kind"] == "buy")
sdf = sdf.apply(add_total)
sdf.to_topic(out)
app.run()
