# The stateful conformance pipeline, in Quix Streams: per message key a
# running count and sum, produced to the output topic with the same key.
#   python state_count.py BROKER INPUT OUTPUT GROUP STATE_DIR COUNT
import sys

from quixstreams import Application

broker, input_name, output_name, group, state_dir, count = sys.argv[1:7]

app = Application(
    broker_address=broker, consumer_group=group, auto_offset_reset="earliest",
    state_dir=state_dir, loglevel="WARNING",
)
source = app.topic(input_name, key_deserializer="str", value_deserializer="json")
output = app.topic(output_name, key_serializer="str", value_serializer="json")


def count_and_sum(value, state):
    n = state.get("count", 0) + 1
    total = state.get("sum", 0) + value["v"]
    state.set("count", n)
    state.set("sum", total)
    return {"k": value["k"], "count": n, "sum": total}


sdf = app.dataframe(source)
sdf = sdf.apply(count_and_sum, stateful=True)
sdf.to_topic(output)
app.run(count=int(count), timeout=30)
