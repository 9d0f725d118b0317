# The join conformance pipelines, in Quix Streams (joins.lua line by line):
# a left and a right topic, a branch per case, each producing to its own
# output topic OUTPUT_PREFIX-<case>.
#   python joins.py BROKER LEFT RIGHT OUTPUT_PREFIX GROUP STATE_DIR SQLITE_PATH
import sys

from quixstreams import Application
from quixstreams.dataframe.joins.lookups import SQLiteLookup, SQLiteLookupField, SQLiteLookupQueryField

broker, left_name, right_name, prefix, group, state_dir, db_path = sys.argv[1:8]

app = Application(
    broker_address=broker, consumer_group=group, auto_offset_reset="earliest",
    state_dir=state_dir, loglevel="WARNING",
)
left_topic = app.topic(left_name, value_deserializer="json")
right_topic = app.topic(right_name, value_deserializer="json")


def out(case):
    return app.topic(prefix + "-" + case, value_serializer="json")


left = app.dataframe(left_topic)
right = app.dataframe(right_topic)

# as-of, inner, keep-left (the default grace: 7 days)
left.join_asof(right, how="inner", on_merge="keep-left").to_topic(out("asof-inner"))


# as-of, left, a merge function and a grace of 2 s
def merge_lr(lv, rv):
    return {"l": lv["l"], "r": rv["r"] if rv is not None else None}


left.join_asof(right, how="left", on_merge=merge_lr, grace_ms=2000, name="asof2").to_topic(out("asof-left"))

# interval, inner, keep-right, 1.5 s back and 0.8 s forward
left.join_interval(right, how="inner", on_merge="keep-right", backward_ms=1500, forward_ms=800,
                   name="iv1").to_topic(out("interval-inner"))

# interval, outer, keep-left, 0.5 s both ways
left.join_interval(right, how="outer", on_merge="keep-left", backward_ms=500, forward_ms=500,
                   name="iv2").to_topic(out("interval-outer"))

# lookup against one SQLite file, on a column of the value (fields in the
# order of their names, as qhost sets them)
lookup = SQLiteLookup(path=db_path)
fields = {
    "device": SQLiteLookupField(table="devices", columns=["name", "model", "rev"], on="id"),
    "history": SQLiteLookupField(table="devices_history", columns=["rev", "note"], on="id", order_by="rev",
                                 order_by_direction="DESC", first_match_only=False),
    "site": SQLiteLookupQueryField(query="SELECT site, rack FROM sites WHERE device = :dev AND rack >= :l % 3",
                                   ttl=0),
    "site_top": SQLiteLookupQueryField(query="SELECT site, rack FROM sites WHERE device = :dev ORDER BY rack DESC"),
}
looked = left.apply(lambda v: v)
looked = looked.join_lookup(lookup, fields, on="dev")
looked.to_topic(out("lookup"))

app.run(timeout=15)
