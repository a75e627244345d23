"""The terminal dashboard's numbers come from the output records."""

from rich.console import Console

from segue.dashboard import DashboardState

H = 3_600_000


def test_dashboard_counts_journeys_activity_and_nba():
    s = DashboardState()
    j = {"id": "cart", "version": 1, "node": "n", "instance": 1}
    for _ in range(4):
        s.add("journey", {"type": "journey.entered", "journey": j, "at_ms": 10 * H})
    s.add("journey", {"type": "journey.converted", "journey": j, "at_ms": 11 * H})
    s.add("journey", {"type": "journey.exited", "journey": j, "reason": "goal:bought",
                      "at_ms": 11 * H})
    s.add("journey", {"type": "journey.exited", "journey": j, "reason": "consent.email.opted_out",
                      "at_ms": 11 * H})
    decisions = [("send", ["ok"], None), ("send", ["ok"], "upgrade_offer"),
                 ("defer", ["cap.email.week"], None), ("drop", ["consent.sms"], None),
                 ("send", ["delivery.failed", "retry"], None), ("defer", ["quiet_hours"], None)]
    for k, (outcome, reasons, action) in enumerate(decisions):
        nba = None if action is None else {
            "model": "v002", "explored": False,
            "ranked": [{"action": action, "channel": "email", "confidence": 0.25}]}
        s.add("decision", {"outcome": outcome, "reasons": reasons, "action": action,
                           "channel": "email", "at_ms": 12 * H, "dispatch_id": f"d{k}",
                           "nba": nba})
    # A second record of the same decision (e.g. a retry) is not a second decision.
    s.add("decision", {"outcome": "send", "reasons": ["retry"], "action": "upgrade_offer",
                       "channel": "email", "at_ms": 2 * H, "dispatch_id": "d1",
                       "nba": {"model": "v002", "ranked": [{"action": "upgrade_offer",
                                                            "channel": "email"}]}})
    s.add("decision", {"outcome": "send", "reasons": ["ok"], "action": None, "channel": "email",
                       "at_ms": 2 * H})  # long before the last hour
    s.add("dispatch", {"channel": "email", "at_ms": 12 * H})
    console = Console(width=120, record=True)
    console.print(s.render())
    text = console.export_text()
    assert "ACTIVE JOURNEYS: 1 | Total customers in journeys: 2" in text
    assert "│ cart " in text and "25.0%" in text  # 1 of 4 converted
    assert "Triggers fired: 6" in text and "Actions executed: 3 (50.0% delivery rate)" in text
    assert "Failed deliveries: 1" in text and "Suppressed (frequency cap): 1" in text
    assert "Suppressed (opt-out): 1" in text and "Deferred (quiet hours): 1" in text
    assert "NBA decisions: 1 | Avg confidence: 25.0% (model v002)" in text
    assert "upgrade_offer (email): 1" in text


def test_the_pipeline_comes_from_the_analytics_totals_when_there_are_any():
    s = DashboardState()
    j = {"id": "cart", "version": 1, "node": "n", "instance": 1}
    s.add("journey", {"type": "journey.entered", "journey": j, "at_ms": H})  # a window's part
    for version, (entered, active, done, conv) in {1: (40, 5, 30, 8), 2: (10, 6, 4, 2)}.items():
        s.add("analytics", {"type": "analytics.journey", "journey": {"id": "cart",
                            "version": version}, "entered": entered, "active": active,
                            "exited": entered - active, "completed": done, "converted": conv,
                            "at_ms": H})
    rows, source = s.pipeline()
    assert rows == {"cart": {"entered": 50, "active": 11, "completed": 34, "converted": 10}}
    assert source == "totals from segue.analytics"
    console = Console(width=120, record=True)
    console.print(s.render())
    text = console.export_text()
    assert "Total customers in journeys: 11" in text and "20.0%" in text
