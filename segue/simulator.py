"""A synthetic customer stream: deterministic by seed, heavy-tailed, Segment-spec events.

Each customer has an archetype (anonymous visitor, shopper, SaaS user, churner), a time zone
and an activity weight drawn from a Pareto distribution, so a few customers send many events
and most send few. Events come in sessions (bursts a minute or so apart), in time order, and a
small share is sent twice with the same ``messageId`` as a retrying producer would.

Example:
    >>> evs = list(simulate(customers=3, events=20, seed=7))
    >>> len(evs) >= 20 and evs == list(simulate(customers=3, events=20, seed=7))
    True
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime

TIMEZONES = (
    "America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London",
    "Europe/Berlin", "Europe/Paris", "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney",
    "America/Sao_Paulo",
)
PLANS = ("free", "starter", "pro", "enterprise")
INDUSTRIES = ("retail", "software", "finance", "health", "education", "media")
PAGES = ("Home", "Pricing", "Blog", "Docs", "Features", "Case Studies")
CONTENT = ("guides", "videos", "webinars", "case-studies", "api")

ARCHETYPES = {
    # name: (share, first-session script, weighted steady-state events)
    "visitor": (0.30, [("page", "Home")], [
        (("page", "Home"), 5), (("page", "Blog"), 4), (("page", "Pricing"), 2),
        (("track", "Product Viewed"), 3), (("page", "Features"), 2),
    ]),
    "shopper": (0.30, [("page", "Home"), ("identify", None), ("track", "Signed Up")], [
        (("track", "Product Viewed"), 8), (("track", "Product Added"), 3),
        (("track", "Cart Viewed"), 2), (("track", "Checkout Started"), 1.5),
        (("track", "Order Completed"), 1), (("track", "Coupon Applied"), 0.3),
        (("page", "Home"), 3), (("track", "Email Opened"), 1),
        (("track", "Email Link Clicked"), 0.4), (("track", "Product Removed"), 0.3),
    ]),
    "saas": (0.30, [("page", "Pricing"), ("track", "Trial Started"), ("identify", None),
                    ("track", "Signed Up"), ("track", "Feature Activated")], [
        (("track", "Signed In"), 6), (("track", "Feature Activated"), 2),
        (("page", "Docs"), 3), (("page", "Pricing"), 1), (("track", "Ticket Created"), 0.4),
        (("track", "CSAT Submitted"), 0.3), (("track", "Subscription Upgraded"), 0.1),
        (("track", "Invite Sent"), 0.2), (("track", "Payment Failed"), 0.05),
        (("track", "Content Viewed"), 1.5), (("track", "Email Opened"), 1),
        (("track", "Order Completed"), 0.2),
    ]),
    "churner": (0.10, [("identify", None), ("track", "Signed Up")], [
        (("track", "Signed In"), 3), (("track", "Ticket Created"), 1),
        (("track", "CSAT Submitted"), 0.5), (("track", "Payment Failed"), 0.3),
        (("track", "Subscription Cancelled"), 0.15), (("page", "Pricing"), 1),
    ]),
}
SESSION_EVENTS = 6  # mean events per session
DEFAULT_START = "2026-01-01T00:00:00Z"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


def parse_start(start: str) -> int:
    return int(datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() * 1000)


class _Customer:
    __slots__ = ("idx", "archetype", "tz", "plan", "industry", "uid", "anon", "adoption")

    def __init__(self, idx: int, rng: random.Random, seed: int) -> None:
        self.idx = idx
        r = rng.random()
        acc = 0.0
        self.archetype = "churner"
        for name, (share, _, _) in ARCHETYPES.items():
            acc += share
            if r < acc:
                self.archetype = name
                break
        self.tz = rng.choice(TIMEZONES)
        self.plan = rng.choice(PLANS)
        self.industry = rng.choice(INDUSTRIES)
        self.anon = f"anon-{seed}-{idx}"
        self.uid = None if self.archetype == "visitor" else f"user-{seed}-{idx}"
        self.adoption = 20 + (idx * 37) % 81


def _properties(rng: random.Random, kind: str, name: str | None) -> dict:
    if name in ("Product Viewed", "Product Added", "Product Removed"):
        return {"product_id": f"p{rng.randrange(500)}", "price": round(rng.uniform(5, 300), 2)}
    if name in ("Order Completed", "Checkout Started"):
        return {"order_id": f"o{rng.randrange(10**9)}", "revenue": round(rng.uniform(10, 900), 2)}
    if name == "CSAT Submitted":
        return {"score": rng.randint(1, 10)}
    if name == "Feature Activated":
        return {"feature": rng.choice(("reports", "api", "sso", "alerts", "dashboards"))}
    if name == "Content Viewed":
        return {"category": rng.choice(CONTENT), "seconds": rng.randint(5, 900)}
    if name == "Ticket Created":
        return {"priority": rng.choice(("low", "normal", "high"))}
    if kind == "page":
        return {"path": f"/{(name or '').lower().replace(' ', '-')}"}
    return {}


def simulate(
    customers: int,
    events: int,
    seed: int = 1,
    start: str = DEFAULT_START,
    days: float = 30.0,
    duplicate_rate: float = 0.005,
    link_anonymous: bool = True,
) -> Iterator[dict]:
    """Yield about ``events`` events (plus retried duplicates) for ``customers`` customers.

    With ``link_anonymous``, a shopper's sign-up (identify) carries the anonymous id it browsed
    under, so identity resolution merges the two.
    """
    if customers < 1 or events < 1:
        raise ValueError("customers and events must be positive")
    rng = random.Random(seed)
    start_ms = parse_start(start)
    span_ms = int(days * 86_400_000)
    people = [_Customer(i, rng, seed) for i in range(customers)]
    weights = [min(rng.paretovariate(1.3), 200.0) for _ in people]
    counts = [0] * customers
    for i in rng.choices(range(customers), weights=weights, k=events):
        counts[i] += 1
    # Every customer gets a start time; later activity is spread in sessions after it.
    stream: list[tuple[int, int, int, tuple[str, str | None]]] = []
    for c, n in zip(people, counts, strict=True):
        if n == 0:
            continue
        first_ms = start_ms + int(rng.random() * span_ms * 0.6)
        _, script, steady = ARCHETYPES[c.archetype]
        names = [s for s, _ in steady]
        wts = [w for _, w in steady]
        seq = 0
        t = first_ms
        plan = list(script[:n])
        plan += rng.choices(names, weights=wts, k=n - len(plan))
        for j, step in enumerate(plan):
            if j > 0:
                if rng.random() < 1 / SESSION_EVENTS:  # new session: hours to days later
                    t += int(rng.expovariate(1 / (span_ms * 0.4 / max(n / SESSION_EVENTS, 1))))
                else:
                    t += int(rng.expovariate(1 / 60_000))
            stream.append((t, c.idx, seq, step))
            seq += 1
    stream.sort()
    n_out = 0
    for t, idx, seq, (kind, name) in stream:
        c = people[idx]
        known = c.uid is not None and (seq > 0 or c.archetype != "shopper")
        ev: dict = {
            "type": kind,
            "messageId": f"m-{seed}-{idx}-{seq}",
            "timestamp": _iso(t),
            "context": {"timezone": c.tz},
        }
        if known:
            ev["userId"] = c.uid
        else:
            ev["anonymousId"] = c.anon
        if kind == "track":
            ev["event"] = name
            ev["properties"] = _properties(rng, kind, name)
        elif kind == "page":
            ev["name"] = name
            ev["properties"] = _properties(rng, kind, name)
        elif kind == "identify":
            ev["traits"] = {"plan": c.plan, "industry": c.industry,
                            "company": f"Company {idx % 997}",
                            "adoption_score": c.adoption,
                            "email": f"customer{idx}@example.com"}
            if c.archetype == "shopper" and link_anonymous:
                # Sign-up on the device they browsed on: links the anonymous history.
                ev["anonymousId"] = c.anon
        n_out += 1
        yield ev
        if rng.random() < duplicate_rate:
            yield ev  # a producer retry: same messageId, same content


def customer_key(ev: dict) -> str:
    """The Kafka key upstream uses: the user id, else the anonymous id."""
    return ev.get("userId") or ev.get("anonymousId") or ""


# ----- ground truth for next best action ------------------------------------------------------
# The simulator's hidden response model: the probability that a customer converts (a
# ``Subscription Upgraded`` event) within the horizon after an action. The trainer never reads
# it; benchmarks use it to measure a policy's value exactly. Effects depend on the customer's
# latent archetype (seen by the flow only through behaviour), plan, industry and adoption.
BASE_RATE = {"visitor": 0.01, "shopper": 0.04, "saas": 0.05, "churner": 0.02}


def true_conversion(c: _Customer, action: str) -> float:
    """P(conversion | customer, action) under the hidden response model."""
    base = BASE_RATE[c.archetype]
    a = c.adoption
    if c.archetype == "visitor":  # nothing about them is known but behaviour
        e = {"content_recommendation": 0.02, "discount": 0.03}.get(action, 0.0)
    elif action == "educational_email":
        e = 0.05 if a < 45 and c.archetype in ("saas", "churner") else 0.005
    elif action == "feature_tip":
        e = 0.06 if c.archetype == "saas" and 45 <= a < 75 else 0.0
    elif action == "upgrade_offer":
        e = 0.12 if a >= 75 and c.plan in ("starter", "pro") else (
            -0.01 if c.plan == "free" else 0.01)
    elif action == "discount":
        e = 0.08 if c.archetype in ("shopper", "churner") else 0.02
    elif action == "csm_outreach":
        e = 0.15 if c.plan == "enterprise" else 0.01
    elif action == "content_recommendation":
        e = 0.04 if c.industry in ("media", "education") else 0.005
    else:  # do_nothing, or an action the model does not know
        e = 0.0
    return min(max(base + e, 0.0), 1.0)


def population(customers: int, seed: int = 1) -> list[_Customer]:
    """The customers ``simulate(customers, …, seed)`` draws (same latent attributes)."""
    rng = random.Random(seed)
    return [_Customer(i, rng, seed) for i in range(customers)]


def customer_of(customer_id: str, people: list[_Customer]) -> _Customer | None:
    """The simulated customer behind an id (``user-<seed>-<i>`` or ``anon-<seed>-<i>``)."""
    try:
        idx = int(customer_id.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None
    return people[idx] if 0 <= idx < len(people) else None


def respond(decisions: Iterator[dict] | list[dict], people: list[_Customer],
            horizon_ms: int = 7 * 86_400_000, goal: str = "Subscription Upgraded",
            seed: int = 1) -> Iterator[dict]:
    """Outcome events for logged next-best-action decisions: each decision's customer
    converts with the hidden probability of the action it took, at a random time within the
    horizon. Deterministic per decision (its own random stream), whatever the input order."""
    for d in decisions:
        c = customer_of(d["customer_id"], people)
        if c is None:
            continue
        rng = random.Random(f"{seed}|{d['dispatch_id']}")
        if rng.random() >= true_conversion(c, d.get("action") or "do_nothing"):
            continue
        at = d["at_ms"] + 1 + int(rng.random() * (horizon_ms - 2))
        ev = {"type": "track", "event": goal, "messageId": f"r-{d['dispatch_id']}",
              "timestamp": _iso(at), "properties": {"source": "simulated-response"}}
        if c.uid is not None:
            ev["userId"] = c.uid
        else:
            ev["anonymousId"] = c.anon
        yield ev
