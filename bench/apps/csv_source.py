# Workload 2 (Quix Streams): Quix's CSVSource on the same file, standalone.
#   python csv_source.py BROKER TOPIC CSV_PATH
import sys

from quixstreams import Application
from quixstreams.models import TopicConfig
from quixstreams.sources import CSVSource

broker, topic_name, path = sys.argv[1:4]

if __name__ == "__main__":   # sources run in spawned processes that re-import this file
    app = Application(broker_address=broker, loglevel="WARNING")
    topic = app.topic(topic_name, key_serializer="string", value_serializer="json",
                      config=TopicConfig(num_partitions=1, replication_factor=1))
    app.add_source(CSVSource(path=path, name="bench-csv"), topic=topic)
    app.run()
