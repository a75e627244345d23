"""Cold start: while no model is promoted, next-best-action decisions learn online.

Thompson sampling per action and segment (the customer's lifecycle stage): each action's
conversion rate within ``nba.horizon_s`` has a Beta(1 + conversions, 1 + decisions -
conversions) posterior; a decision draws one rate per eligible action (doing nothing
included) and takes the action whose drawn net value, ``(rate - rate of doing nothing) ×
conversion_value - cost``, is highest. So a new deployment starts exploring evenly and moves
towards what converts from its first conversions, where the inventory order never learns.

- Every draw comes from a random stream seeded by the decision's identity, and a decision
  uses the counts as they were when it was asked for (``Request.prior``): the same input
  gives the same decisions, wherever micro-batches end.
- The probability that the sampler takes the action it took (``propensity``, estimated from
  ``PROPENSITY_DRAWS`` draws of the same posteriors) is logged, as offline evaluation needs.
- Counts are per partition (``m|bandit``): a decision counts when it is made, a conversion
  (a goal event within the horizon of the customer's last decision) when it arrives.

Example:
    >>> b = Bandit()
    >>> b.decided("activation", "tip"); b.converted("activation", "tip")
    >>> b.prior("activation")
    {'tip': (1, 1)}
"""

from __future__ import annotations

import hashlib

import numpy as np
import orjson

PROPENSITY_DRAWS = 256


class Bandit:
    """Decisions and conversions per segment and action (one partition's)."""

    def __init__(self, raw: bytes | None = None) -> None:
        self.arms: dict[str, dict[str, list[int]]] = orjson.loads(raw) if raw else {}
        self.changed = False

    def prior(self, segment: str) -> dict[str, tuple[int, int]]:
        """(decisions, conversions) per action of ``segment``, as of now (a copy)."""
        return {a: (n, c) for a, (n, c) in self.arms.get(segment, {}).items()}

    def decided(self, segment: str, action: str) -> None:
        self.arms.setdefault(segment, {}).setdefault(action, [0, 0])[0] += 1
        self.changed = True

    def converted(self, segment: str, action: str) -> None:
        arm = self.arms.setdefault(segment, {}).setdefault(action, [0, 0])
        arm[1] = min(arm[1] + 1, arm[0])  # never more conversions than decisions
        self.changed = True

    def encode(self) -> bytes:
        return orjson.dumps(self.arms, option=orjson.OPT_SORT_KEYS)


def _rng(key: tuple, salt: str) -> np.random.Generator:
    digest = hashlib.blake2b(repr((key, salt)).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def thompson(key: tuple, prior: dict[str, tuple[int, int]], actions: list[str],
             costs: list[float], value: float, nothing: str
             ) -> tuple[list[int], list[float], list[float]]:
    """Order of ``actions`` by one Thompson draw of net value (best first), the probability
    that the sampler takes each action, and each action's drawn rate."""
    n = np.asarray([prior.get(a, (0, 0))[0] for a in actions], dtype=np.float64)
    c = np.asarray([prior.get(a, (0, 0))[1] for a in actions], dtype=np.float64)
    base_n, base_c = prior.get(nothing, (0, 0))
    alpha, beta = 1.0 + c, 1.0 + n - c
    cost = np.asarray(costs, dtype=np.float64)
    is_nothing = np.asarray([a == nothing for a in actions])

    def values(rates: np.ndarray, base: np.ndarray) -> np.ndarray:
        v = (rates - base[..., None]) * value - cost
        return np.where(is_nothing, 0.0, v)

    rng = _rng(key, "thompson")
    rates = rng.beta(alpha, beta)
    base = rng.beta(1.0 + base_c, 1.0 + base_n - base_c)
    drawn = values(rates, np.asarray(base))
    order = sorted(range(len(actions)), key=lambda i: (-drawn[i], i))
    sims = _rng(key, "propensity")
    many = values(sims.beta(alpha, beta, size=(PROPENSITY_DRAWS, len(actions))),
                  sims.beta(1.0 + base_c, 1.0 + base_n - base_c, size=PROPENSITY_DRAWS))
    wins = np.bincount(np.argmax(many, axis=1), minlength=len(actions)) / PROPENSITY_DRAWS
    # Never 0 for the action taken: its probability under the sampler was not nil.
    probs = [float(w) for w in wins]
    probs[order[0]] = max(probs[order[0]], 1.0 / PROPENSITY_DRAWS)
    return order, probs, [round(float(r), 4) for r in rates]
