"""DeliveryPolicy as a pure function of (profile, send, time)."""

from datetime import UTC, datetime

import pytest

from models.profile import Profile
from models.settings import PolicySettings
from operators.policy import DAY_MS, DeliveryPolicy


def ms(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def profile(tz="UTC", **kw):
    return Profile(id="c", ref="user:c", links=["user:c"], timezone=tz, **kw)


def test_weekly_cap_defers_to_when_the_oldest_send_leaves_the_window():
    pol = DeliveryPolicy(PolicySettings(fallback={}))
    p = profile()
    t1, t2 = ms(2026, 2, 2, 10), ms(2026, 2, 4, 10)
    assert pol.record(p, "email", "j", "d1", t1) and pol.record(p, "email", "j", "d2", t2)
    assert not pol.record(p, "email", "j", "d2", t2)  # the same dispatch never counts twice
    v = pol.decide(p, "email", "marketing", {}, "j", ms(2026, 2, 5, 10))
    assert (v.outcome, v.reasons, v.next_ms) == ("defer", ["cap.email.week"], t1 + 7 * DAY_MS)


def test_daily_and_cross_channel_and_journey_caps():
    pol = DeliveryPolicy(PolicySettings(fallback={}))
    p = profile()
    now = ms(2026, 2, 2, 12)
    pol.record(p, "push", "j", "a", now - 3600_000)
    v = pol.decide(p, "push", "marketing", {"push": {"day": 1}}, "j", now)
    assert v.reasons == ["cap.journey.push.day"]
    assert pol.decide(p, "push", "marketing", {"push": {"day": 1}}, "other", now).outcome == \
        "send"  # another journey's cap does not count this journey's sends
    for i in range(8):
        pol.record(p, "in_app", "x", f"i{i}", now - i * 60_000)
    assert pol.decide(p, "ads", "marketing", {}, "j", now).reasons == ["cap.total.week"]


def test_fallback_chain_records_original_and_chosen_channel():
    pol = DeliveryPolicy(PolicySettings())
    v = pol.decide(profile(), "sms", "marketing", {}, "j", ms(2026, 2, 2, 12))
    assert (v.outcome, v.channel, v.reasons) == ("send", "email",
                                                 ["consent.sms", "fallback.sms->email"])
    p = profile(suppressed={"push": "bounce"})
    v = pol.decide(p, "push", "marketing", {}, "j", ms(2026, 2, 2, 12))
    assert (v.channel, v.reasons) == ("inbox", ["suppressed.bounce", "fallback.push->inbox"])


def test_enrichment_ends_a_chain_silently():
    pol = DeliveryPolicy(PolicySettings(fallback={"email": "enrich"}))
    p = profile(consent={"email": {"marketing": "opted_out"}})
    v = pol.decide(p, "email", "marketing", {}, "j", ms(2026, 2, 2, 12))
    assert (v.outcome, v.channel, v.reasons) == ("drop", "enrich",
                                                 ["consent.email", "fallback.enrichment"])


def test_transactional_skips_caps_and_quiet_hours_but_not_suppression():
    pol = DeliveryPolicy(PolicySettings(fallback={}))
    p = profile(consent={"email": {"marketing": "opted_out"}})
    late = ms(2026, 2, 2, 23, 30)
    assert pol.decide(p, "email", "transactional", {}, "j", late).outcome == "send"
    p.suppressed["email"] = "bounce"
    assert pol.decide(p, "email", "transactional", {}, "j", late).reasons == [
        "suppressed.bounce"]


@pytest.mark.parametrize("tz,at,expected", [
    ("Europe/Paris", ms(2026, 2, 3, 22, 30), ms(2026, 2, 4, 8)),   # 23:30 CET -> 09:00 CET
    ("Europe/Paris", ms(2026, 3, 28, 22, 30), ms(2026, 3, 29, 7)),  # -> 09:00 CEST (DST)
    ("America/New_York", ms(2026, 11, 1, 1, 0), ms(2026, 11, 1, 14)),  # fall back day
    ("Asia/Tokyo", ms(2026, 2, 2, 23, 0), ms(2026, 2, 3, 0)),  # 08:00 JST -> 09:00 JST
])
def test_quiet_hours_defer_to_the_next_local_window(tz, at, expected):
    v = DeliveryPolicy(PolicySettings()).decide(profile(tz), "email", "marketing", {}, "j", at)
    assert (v.outcome, v.reasons, v.next_ms) == ("defer", ["quiet_hours"], expected)


def test_blackout_dates_skip_to_the_next_open_day():
    pol = DeliveryPolicy(PolicySettings(blackout_dates=["2026-12-25", "2026-12-26"]))
    v = pol.decide(profile(), "push", "marketing", {}, "j", ms(2026, 12, 25, 12))
    assert v.next_ms == ms(2026, 12, 27, 8)


def test_a_cap_of_zero_shuts_the_channel():
    pol = DeliveryPolicy(PolicySettings(caps={"email": {"day": 0}}, send_windows={},
                                        fallback={}))
    v = pol.decide(profile(), "email", "marketing", {}, "j", ms(2026, 1, 5, 12))
    assert (v.outcome, v.channel, v.reasons) == ("drop", "email", ["cap.email.day"])
    pol = DeliveryPolicy(PolicySettings(caps={"email": {"day": 0}}, send_windows={}))
    v = pol.decide(profile(), "email", "marketing", {}, "j", ms(2026, 1, 5, 12))
    assert (v.outcome, v.channel) == ("send", "in_app")  # falls back along the chain
