"""The periodic ``[segue]`` line: the current rate (not the average since start, which decays
while idle), the input lag and when the flow catches up at that rate (issue 19)."""

import time

from flows.metrics import INPUT_LAG
from flows.progress import Progress, input_lag


def test_the_line_shows_the_current_rate_lag_and_time_to_catch_up():
    p = Progress()
    p.update("events#0", {"applied": 900, "dead_lettered": 100}, 999)
    INPUT_LAG.labels("test.progress", "0").set(1500)
    try:
        lag = input_lag()
        text, mark = p.now_line((time.monotonic() - 2.0, 0))  # 1,000 messages in 2 s
        assert text.startswith("[segue] now 500/s; lag ")
        assert f"lag {lag:,}" in text and "applied 900" in text
        if lag == 1500:  # no other test left a lag behind
            assert "catching up in 3s" in text
        # Idle: nothing new since the last line is a current rate of 0, not a decaying mean.
        idle, _ = p.now_line(mark)
        assert idle.startswith("[segue] now 0/s; lag ") and "not catching up" in idle
        INPUT_LAG.labels("test.progress", "0").set(0)
        if input_lag() == 0:
            caught, _ = p.now_line(mark)
            assert "lag 0, caught up" in caught
    finally:
        INPUT_LAG.remove("test.progress", "0")
    first, _ = Progress().now_line(None)
    assert first.startswith("[segue] 0 events")  # nothing to compare with yet
