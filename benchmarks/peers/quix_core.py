"""The core of Segue's job in Quix Streams, written as Quix intends (StreamingDataFrame,
RocksDB-backed state per key), for the throughput benchmark.

Per customer (the message key): profile counters (events in total and per event name), a
sliding-window frequency cap (send times of the last 7 days in state; at most 1 a day and 2 a
week), and one rule-based send decision (a cart or trial event, under the cap → a dispatch
command to the output topic). Reads the input from the beginning and stops 5 s after the last
message; prints one JSON line with its throughput: from process start to the last message
processed (``events_per_s``), and from the first message processed to the last
(``first_to_last_events_per_s``, start-up apart in ``startup_s``).

Run by ``benchmarks/throughput.py`` with the .venv-peers interpreter.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import datetime

START = time.monotonic()
DAY = 86_400_000
TRIGGERS = {"Product Added", "Checkout Started", "Trial Started", "Cart Viewed"}


def rule(value: dict, state) -> dict | None:  # noqa: ANN001 - Quix's State, or any get/set
    """The job for one event of one customer, on that customer's ``state``: count it, and
    return the dispatch command when it is a trigger under the caps (else None). Module-level
    so that ``tests/unit/test_peer_job.py`` can hold Segue's configuration of the job to it."""
    name = value.get("event") or value.get("type")
    ts = int(datetime.fromisoformat(value["timestamp"].replace("Z", "+00:00"))
             .timestamp() * 1000)
    state.set("events", state.get("events", 0) + 1)
    key = f"n:{name}"
    state.set(key, state.get(key, 0) + 1)
    if name not in TRIGGERS:
        return None
    sends = [t for t in state.get("sends", []) if t > ts - 7 * DAY]
    if len(sends) >= 2 or any(t > ts - DAY for t in sends):
        state.set("sends", sends)
        return None
    sends.append(ts)
    state.set("sends", sends)
    return {"type": "dispatch", "customer_id": value.get("userId") or value.get("anonymousId"),
            "channel": "email", "template": "cart-reminder", "at_ms": ts}


def main() -> None:
    import quixstreams
    from quixstreams import Application

    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--state-dir", required=True)
    args = ap.parse_args()
    app = Application(
        broker_address=args.brokers, consumer_group=f"quix-bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", state_dir=args.state_dir, use_changelog_topics=False,
        consumer_extra_config={"session.timeout.ms": 10_000, "fetch.max.bytes": 64 << 20},
        producer_extra_config={"linger.ms": 5}, loglevel="WARNING",
    )
    src = app.topic(args.topic, value_deserializer="json", key_deserializer="str")
    out = app.topic(args.output, value_serializer="json")
    seen = {"n": 0, "first": 0.0, "last": 0.0, "dispatches": 0}

    def decide(value: dict, state) -> dict | None:  # noqa: ANN001 - Quix's State
        seen["n"] += 1
        seen["last"] = time.monotonic()
        if seen["n"] == 1:
            seen["first"] = seen["last"]
        out = rule(value, state)
        if out is not None:
            seen["dispatches"] += 1
        return out

    sdf = app.dataframe(src)
    sdf = sdf.apply(decide, stateful=True).filter(lambda v: v is not None)
    sdf.to_topic(out)
    app.run(timeout=5.0)
    secs = seen["last"] - START
    steady = seen["last"] - seen["first"]
    print(json.dumps({"events": seen["n"], "seconds": round(secs, 1),
                      "events_per_s": round(seen["n"] / secs) if secs > 0 else None,
                      "first_to_last_events_per_s": round(seen["n"] / steady)
                      if steady > 0 else None,
                      "startup_s": round(seen["first"] - START, 1),
                      "dispatches": seen["dispatches"], "version": quixstreams.__version__}))


if __name__ == "__main__":
    main()
