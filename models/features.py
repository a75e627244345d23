"""The next-best-action feature builder: one function from a stored profile to a feature row.

The live flow, ``segue replay`` and the trainer all call :func:`build` (the trainer reads the
rows the flow logged in its decisions), so what a model is trained on is exactly what it is
served. Changing a feature means a new ``VERSION``; a model records the version it was trained
on and is refused by a flow with a different one.

Example:
    >>> from models.profile import new_profile
    >>> p = new_profile("user:u1", 0)
    >>> p.traits = {"plan": "pro", "adoption_score": 62}
    >>> row, cats = build(p, 86_400_000)
    >>> len(row) == len(NAMES), row[NAMES.index("adoption_score")], cats["plan"]
    (True, 62.0, 'pro')
"""

from __future__ import annotations

import math
import zlib
from typing import Any

from models.profile import Profile, Run
from models.settings import STAGES
from state.windows import in_window, span

VERSION = 1
DAY_MS = 86_400_000
NAN = math.nan
PLANS = ("free", "starter", "pro", "enterprise")

# (name, counter key, window) for event counts over sliding windows.
_COUNTS = (
    ("pricing_views_7d", "page:Pricing", "7d"),
    ("pricing_views_30d", "page:Pricing", "30d"),
    ("signins_7d", "Signed In", "7d"),
    ("signins_30d", "Signed In", "30d"),
    ("features_activated_30d", "Feature Activated", "30d"),
    ("content_views_30d", "Content Viewed", "30d"),
    ("docs_views_30d", "page:Docs", "30d"),
    ("product_views_7d", "Product Viewed", "7d"),
    ("cart_adds_7d", "Product Added", "7d"),
    ("checkouts_30d", "Checkout Started", "30d"),
    ("orders_30d", "Order Completed", "30d"),
    ("tickets_30d", "Ticket Created", "30d"),
    ("payment_failures_30d", "Payment Failed", "30d"),
    ("email_opens_30d", "Email Opened", "30d"),
    ("email_clicks_30d", "Email Link Clicked", "30d"),
    ("push_taps_30d", "Push Notification Tapped", "30d"),
)
_WINDOWS = ("7d", *sorted({w for _, _, w in _COUNTS} - {"7d"}))  # events_7d's first
_COUNT_KEYS = tuple((key, _WINDOWS.index(window)) for _, key, window in _COUNTS)
CATEGORICAL = ("plan", "industry", "stage")
NAMES: tuple[str, ...] = (
    "tenure_days", "days_since_last_seen", "events_total", "sessions", "events_7d",
    *(n for n, _, _ in _COUNTS),
    "orders_total", "revenue_total", "adoption_score", "known",
    "days_in_stage", "stage_changes", "stage_velocity", "days_in_journey",
    *CATEGORICAL,
)
# How the rationale says a feature's value; {v} is the value.
LABELS: dict[str, str] = {
    "tenure_days": "customer for {v} days",
    "days_since_last_seen": "last active {v} days ago",
    "events_total": "{v} events in total",
    "sessions": "{v} sessions",
    "events_7d": "{v} events in 7 days",
    "pricing_views_7d": "pricing page viewed {v}× in 7 days",
    "pricing_views_30d": "pricing page viewed {v}× in 30 days",
    "signins_7d": "signed in {v}× in 7 days",
    "signins_30d": "signed in {v}× in 30 days",
    "features_activated_30d": "{v} features activated in 30 days",
    "content_views_30d": "{v} content views in 30 days",
    "docs_views_30d": "docs viewed {v}× in 30 days",
    "product_views_7d": "{v} product views in 7 days",
    "cart_adds_7d": "{v} cart adds in 7 days",
    "checkouts_30d": "{v} checkouts started in 30 days",
    "orders_30d": "{v} orders in 30 days",
    "tickets_30d": "{v} support tickets in 30 days",
    "payment_failures_30d": "{v} failed payments in 30 days",
    "email_opens_30d": "opened {v} emails in 30 days",
    "email_clicks_30d": "clicked {v} emails in 30 days",
    "push_taps_30d": "tapped {v} pushes in 30 days",
    "orders_total": "{v} orders in total",
    "revenue_total": "spent {v} in total",
    "adoption_score": "adoption {v}",
    "known": "identified customer: {v}",
    "days_in_stage": "{v} days in this stage",
    "stage_changes": "{v} stage changes",
    "stage_velocity": "{v} stage changes a month",
    "days_in_journey": "day {v} of the journey",
    "plan": "plan {v}",
    "industry": "industry {v}",
    "stage": "stage {v}",
}


def category_code(name: str, value: Any) -> float:
    """A categorical value as the integer LightGBM sees (NaN when missing)."""
    if value is None or value == "":
        return NAN
    if name == "stage":
        return float(STAGES.index(value)) if value in STAGES else NAN
    if name == "plan" and value in PLANS:
        return float(PLANS.index(value))
    return float(16 + zlib.crc32(str(value).encode()) % 4096)


def _num(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return NAN


def days(ms: int) -> float:
    """``round(ms / DAY_MS, 3)``, the same float, from integers: ``round`` goes through a
    decimal conversion (a sixth of ``build``). Exact: ``ms / DAY_MS`` lies at least 1/86,400
    of a thousandth from any halfway point unless exactly on one, far beyond the float's error,
    so both round to the same thousandth; an exact half is left to ``round`` itself.

    >>> all(repr(days(ms)) == repr(round(ms / DAY_MS, 3)) for ms in (0, 1, 43_199, 43_200,
    ...     43_201, 86_400_000 * 365 + 129_600, -1, -43_200, -43_201, -1_234_567_891))
    True
    """
    k, r = divmod(ms, 86_400)  # thousandths of a day, and what is left over
    if r == 43_200:
        return round(ms / DAY_MS, 3)
    q = k + 1 if r > 43_200 else k
    if q == 0 and ms < 0:
        return -0.0  # as round gives it (a decision record writes -0.0)
    return q / 1000


def round4(x: float) -> float:
    """``round(x, 4)``, the same float, without round's decimal conversion where the fourth
    decimal is clear: ``x * 10_000`` is within 1e-7 of the exact product below 1e9, so a
    fraction more than 1e-6 from a half decides as the exact one would; the rest (halves,
    huge values, NaN) goes to ``round`` itself.

    >>> all(repr(round4(x)) == repr(round(x, 4)) for x in (0.0, -0.0, 0.12345, 0.00005,
    ...     -0.00001, 0.99995, 123456.78915, 1e300, float("nan"), float("inf")))
    True
    """
    y = x * 10_000.0
    if not -1e9 < y < 1e9:
        return round(x, 4)
    f = math.floor(y)
    d = y - f
    if -1e-6 < d - 0.5 < 1e-6:
        return round(x, 4)
    k = f + 1 if d > 0.5 else f
    if k == 0:
        return math.copysign(0.0, x)  # round keeps the sign of a zero
    return k / 10_000


def score_rows(cols: dict[str, list[float]], n: int) -> list[dict[str, float]]:
    """Row by row, each score column's value to four decimals (``NbaModel.scores``)."""
    columns = list(cols.items())
    return [{name: round4(v[i]) for name, v in columns} for i in range(n)]


def build(p: Profile, at: int, run: Run | None = None) -> tuple[list[float], dict[str, Any]]:
    """The feature row of profile ``p`` at event time ``at`` (``run``: the journey run the
    decision is made in, if any), and the raw values of the categorical features."""
    counters = p.counters
    traits = p.traits
    life = p.lifecycle
    tenure_ms = max(at - p.first_seen, 0)
    tenure = tenure_ms / DAY_MS
    spans = [span(w, at) for w in _WINDOWS]  # each window's bounds, worked out once
    level, lo, hi = spans[0]
    events_7d = 0
    for c in counters.values():
        events_7d += in_window(c, level, lo, hi)
    row = [
        days(tenure_ms),
        days(max(at - p.last_seen, 0)),
        float(p.events),
        float(p.sessions),
        float(events_7d),
    ]
    for key, w in _COUNT_KEYS:
        c = counters.get(key)
        if c is None:
            row.append(0.0)
        else:
            level, lo, hi = spans[w]
            row.append(float(in_window(c, level, lo, hi)))
    orders = counters.get("Order Completed")
    since = life.since
    changes = float(life.changes)
    row += [
        float(orders[0]) if orders is not None else 0.0,
        round(float(p.revenue), 2),
        _num(traits.get("adoption_score")),
        1.0 if p.ref.startswith("user:") else 0.0,
        days(at - since) if isinstance(since, int) else NAN,
        changes,
        round(changes * 30 / max(tenure, 1.0), 3),
        days(at - run.entered) if run and run.entered is not None else 0.0,
    ]
    cats = {"plan": traits.get("plan"), "industry": traits.get("industry"),
            "stage": life.stage}
    row += [category_code(n, cats[n]) for n in CATEGORICAL]
    return row, cats


def as_dict(row: list[float]) -> dict[str, float | None]:
    """A feature row as the decision record logs it (NaN as null)."""
    return {n: (None if v != v else v) for n, v in zip(NAMES, row, strict=True)}


def from_dict(d: dict[str, Any]) -> list[float]:
    """The row back from a logged decision (missing or null as NaN)."""
    return [NAN if d.get(n) is None else float(d[n]) for n in NAMES]


def describe(name: str, value: float, cats: dict[str, Any] | None = None) -> str:
    """A person's words for one feature value, e.g. ``pricing page viewed 3× in 7 days``."""
    if name in CATEGORICAL:
        shown = (cats or {}).get(name)
        return LABELS[name].format(v=shown if shown is not None else "unknown")
    if value != value:
        return LABELS.get(name, name + " {v}").format(v="unknown")
    v = int(value) if float(value).is_integer() else round(value, 1)
    return LABELS.get(name, name + " {v}").format(v=v)
