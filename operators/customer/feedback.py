"""What channels report back: consent changes, suppressions (hard bounces, complaints),
delivery failures and engagement. ``apply`` changes the profile and says what the partition
must act on (an opt-out takes the customer out of journeys; a failure is retried).

Example:
    >>> from models.events import InEvent
    >>> from models.profile import new_profile
    >>> p = new_profile("user:u1", 0)
    >>> ev = InEvent("track", "m1", "u1", "Unsubscribed", 5, properties={"channel": "sms"})
    >>> apply(p, ev), p.consent
    (Feedback(opted_out='sms', failed_dispatch=None, failed_channel=None), \
{'sms': {'marketing': 'opted_out'}})
"""

from __future__ import annotations

from dataclasses import dataclass

from models.events import CONSENT_UPDATED
from models.in_event import InEvent
from models.journey import CHANNELS
from models.profile import Profile

BOUNCES = {"Email Bounced": "email", "Push Notification Bounced": "push", "SMS Failed": "sms"}
FAILURES = ("Dispatch Failed",)
ENGAGEMENT = {
    "Email Delivered": ("email", "delivered"), "Email Opened": ("email", "opened"),
    "Email Link Clicked": ("email", "clicked"), "Push Notification Received": ("push", "delivered"),
    "Push Notification Tapped": ("push", "clicked"), "SMS Delivered": ("sms", "delivered"),
    "Dispatch Delivered": ("unknown", "delivered"),
}
FEEDBACK_EVENTS = frozenset((CONSENT_UPDATED, "Unsubscribed", "Email Marked as Spam", *BOUNCES,
                             *FAILURES, *ENGAGEMENT))


@dataclass(slots=True, frozen=True)
class Feedback:
    """What the partition must act on after ``apply``."""

    opted_out: str | None = None        # channel opted out of marketing
    failed_dispatch: str | None = None  # dispatch id a channel reported failed
    failed_channel: str | None = None   # the channel a failure counts against (alerts)


def channel(value: object, default: str) -> str:
    """A channel named in event properties: one of ours, else the default."""
    return value if isinstance(value, str) and value in CHANNELS else default


def _consent(p: Profile, ch: str, purpose: str, status: object, at: int) -> None:
    p.consent.setdefault(ch, {})[purpose] = status
    p.consent_ts[f"{ch}/{purpose}"] = at


def apply(p: Profile, ev: InEvent) -> Feedback | None:
    """Fold one feedback event (``FEEDBACK_EVENTS``) into the profile."""
    props = ev.properties
    key = ev.key
    if key == CONSENT_UPDATED:  # properties validated at the edge (ConsentProperties)
        ch = props.get("channel", "all")
        purpose = props.get("purpose", "marketing")
        status = props.get("status")
        _consent(p, ch, purpose, status, ev.ts_ms)
        if status == "opted_out" and purpose in ("marketing", "all"):
            return Feedback(opted_out=ch)
    elif key == "Unsubscribed":
        ch = channel(props.get("channel"), "email")
        _consent(p, ch, "marketing", "opted_out", ev.ts_ms)
        return Feedback(opted_out=ch)
    elif key == "Email Marked as Spam":
        p.suppressed["email"] = "complaint"
        _consent(p, "email", "marketing", "opted_out", ev.ts_ms)
        return Feedback(opted_out="email")
    elif key in BOUNCES:
        if props.get("bounce_type") != "soft":
            p.suppressed[BOUNCES[key]] = "bounce"
    elif key in FAILURES:
        dispatch_id = props.get("dispatch_id")
        failed = p.sent.get(dispatch_id) if isinstance(dispatch_id, str) else None
        return Feedback(failed_dispatch=dispatch_id if isinstance(dispatch_id, str) else None,
                        failed_channel=failed["ch"] if failed else
                        channel(props.get("channel"), "unknown"))
    elif key in ENGAGEMENT:
        ch, what = ENGAGEMENT[key]
        ch = channel(props.get("channel"), ch)
        eng = p.engagement.setdefault(ch, {})
        eng[what] = eng.get(what, 0) + 1
    return None
