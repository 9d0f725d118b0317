# The Quix side of the window algorithm comparison (windows_diff_spec.lua):
# runs cases through Quix Streams' own window classes and windowed RocksDB
# store, message by message, with a checkpoint (transaction commit) where
# the case says, and prints per message the results as JSON lines.
#   python quix_side.py STATE_DIR < cases.jsonl > results.jsonl
# A case: {"kind", "duration", "step", "grace", "count", "agg", "mode",
# "closing", "trigger", "late", "messages": [[key, value, ts], ...],
# "checkpoints": [index after which the transaction commits, ...]}.
# Output: one line per case: [[[key, value, timestamp], ...] per message].
# Keys go to Quix as bytes, so that its store prefixes are the key bytes,
# as qhost's are for string keys.
import json
import sys

import quixstreams.dataframe.windows.aggregations as agg
from quixstreams.context import set_message_context
from quixstreams.dataframe.windows import definitions as d
from quixstreams.models import MessageContext
from quixstreams.state.manager import StateStoreManager

state_dir = sys.argv[1]


class Frame:
    """What a window definition keeps of its dataframe (nothing is called)."""


def trigger(spec):
    if not spec:
        return None
    op, t = spec["op"], spec["t"]

    def fn(aggregated, value, key, timestamp, headers):
        if op == "state_ge":
            return aggregated >= t
        if op == "value_gt":
            return value > t
        if op == "len_ge":
            return len(aggregated) >= t
        raise ValueError(op)

    return fn


def make_window(case, late_log):
    kind, a = case["kind"], case["agg"]
    trig = case.get("trigger") or {}
    before = trigger(trig) if trig.get("when") == "before" else None
    after = trigger(trig) if trig.get("when") == "after" else None

    def on_late(value, key, ts, late_by, start, end, name, topic, partition, offset):
        late_log.append([key.decode(), ts, late_by, start, end])
        return False

    common = dict(dataframe=Frame(), name=None)
    if kind == "tumbling":
        w = d.TumblingTimeWindowDefinition(duration_ms=case["duration"], grace_ms=case["grace"], on_late=on_late,
                                           before_update=before, after_update=after, **common)
    elif kind == "hopping":
        w = d.HoppingTimeWindowDefinition(duration_ms=case["duration"], grace_ms=case["grace"], step_ms=case["step"],
                                          on_late=on_late, before_update=before, after_update=after, **common)
    elif kind == "sliding":
        w = d.SlidingTimeWindowDefinition(duration_ms=case["duration"], grace_ms=case["grace"], on_late=on_late,
                                          **common)
    elif kind == "tumbling_count":
        w = d.TumblingCountWindowDefinition(count=case["count"], **common)
    elif kind == "hopping_count":
        w = d.HoppingCountWindowDefinition(count=case["count"], step=case["step"], **common)
    elif kind == "sliding_count":
        w = d.SlidingCountWindowDefinition(count=case["count"], **common)
    else:
        raise ValueError(kind)

    if a in ("sum", "count", "mean", "min", "max", "collect"):
        return getattr(w, a)()
    if a == "reduce":
        def reducer(acc, v):
            acc.append(v)
            return acc
        return w.reduce(reducer=reducer, initializer=lambda v: [v])
    if a == "multi":
        return w.agg(early=agg.Earliest("x"), first=agg.First("x"), last=agg.Last("y"), latest=agg.Latest("x"),
                     mean=agg.Mean("x"), mn=agg.Min("y"), mx=agg.Max("x"), n=agg.Count(), ny=agg.Count("y"),
                     s=agg.Sum("x"))
    if a == "multi_collect":
        return w.agg(n=agg.Count(), s=agg.Sum("x"), all=agg.Collect(), xs=agg.Collect("x"))
    raise ValueError(a)


def run(case, n):
    manager = StateStoreManager(group_id="g%d" % n, state_dir=state_dir)
    late_log = []
    window = make_window(case, late_log)
    if case["kind"] not in ("tumbling_count", "hopping_count", "sliding_count"):
        from quixstreams.dataframe.windows.time_based import ClosingStrategy
        window._closing_strategy = ClosingStrategy.new(case.get("closing", "key"))
    manager.register_windowed_store(stream_id="t", store_name=window.name)
    store = manager.get_store(stream_id="t", store_name=window.name)
    store.assign_partition(0)
    final = case["mode"] == "final"
    out = []
    checkpoints = set(case["checkpoints"])
    tx = store.start_partition_transaction(0)
    for i, (key, value, ts) in enumerate(case["messages"]):
        set_message_context(MessageContext(topic="t", partition=0, offset=i, size=0))
        late_log.clear()
        updated, expired = window.process_window(value=value, key=key.encode(), timestamp_ms=ts, headers=None,
                                                 transaction=tx)
        results = []
        if final:
            for k, w in expired:
                results.append([k.decode(), w, w["start"]])
        else:
            for k, w in expired:
                pass
            for k, w in updated:
                results.append([k.decode(), w, w["start"]])
        out.append({"r": results, "late": list(late_log)})
        if i in checkpoints:
            tx.prepare()
            tx.flush()
            tx = store.start_partition_transaction(0)
    store.revoke_partition(0)
    manager.close()
    return out


for n, line in enumerate(sys.stdin):
    case = json.loads(line)
    try:
        print(json.dumps(run(case, n)))
    except Exception as e:  # noqa: BLE001 - the comparison reports it
        print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
    sys.stdout.flush()
