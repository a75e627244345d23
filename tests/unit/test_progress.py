"""The run's progress line: the rate is from the first input message to the last, with start-up
apart, so idle time before or after the input does not dilute it."""

import flows.progress as progress_mod
from flows.progress import Progress


def test_rate_runs_from_the_first_message_to_the_last(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: now[0])
    p = Progress()
    now[0] = 102.0  # start-up: nothing applied for 2 s
    p.update("e#0", {"applied": 0}, -1)
    assert p.rates() == (0, None, None)
    p.update("e#0", {"applied": 100}, 99)
    now[0] = 104.0
    p.update("e#1", {"applied": 300, "deduplicated": 50, "dead_lettered": 50}, 399)
    now[0] = 500.0  # idle long after the input ended: the rate stays put
    p.update("e#1", {"applied": 300, "deduplicated": 50, "dead_lettered": 50}, 399)
    seen, rate, startup = p.rates()
    assert (seen, rate, startup) == (500, 250.0, 2.0)
    assert "(250/s first to last, start-up 2.0s)" in p.line()
