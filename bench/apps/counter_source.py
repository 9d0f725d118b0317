# Workloads 3 and 4 (Quix Streams): the same source as counter_source.lua.
#   python counter_source.py BROKER TOPIC LIMIT [OUTPUT GROUP]
import sys

from quixstreams import Application
from quixstreams.models import TopicConfig
from quixstreams.sources import Source


class Counter(Source):
    def __init__(self, name, limit):
        super().__init__(name=name)
        self.limit = limit

    def run(self):
        i = 0
        while self.running and i < self.limit:
            msg = self.serialize(key=str(i), value={"n": i})
            self.produce(key=msg.key, value=msg.value)
            i += 1


if __name__ == "__main__":   # sources run in spawned processes that re-import this file
    broker, topic_name, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    output, group = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else (None, "bench-counter")
    app = Application(broker_address=broker, consumer_group=group,
                      auto_offset_reset="earliest", loglevel="WARNING")
    one = TopicConfig(num_partitions=1, replication_factor=1)
    topic = app.topic(topic_name, key_serializer="str", value_serializer="json", config=one)
    counter = Counter(name="counter", limit=limit)
    if output:
        out = app.topic(output, config=one)
        sdf = app.dataframe(topic=topic, source=counter)
        sdf.to_topic(out)
    else:
        app.add_source(counter, topic=topic)
    app.run()
