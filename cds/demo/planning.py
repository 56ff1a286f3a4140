"""Planning a demo network: how many CPOs, their Zipf-like market shares, brands, operator codes and home states,
and how each CPO's connectors split into catalogs that fit one publish request (docs/decisions.md §G).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cds.demo.geography import CORRIDORS, cities, corridor_ends
from cds.demo.market import ALNUM, BRAND_A, BRAND_B, LEGAL_FORMS, MAX_CATALOG_CONNECTORS, PAYMENTS
from cds.demo.participants import BapSpec, BppSpec, derive_key_id, derive_keypair


@dataclass(frozen=True, slots=True)
class Cpo:
    index: int
    bpp: BppSpec
    brand: str
    states: tuple[str, ...] | None  # None = national
    corridors: tuple[int, ...]
    corridor_share: float
    live_status: bool
    payments: tuple[str, ...]
    price_factor: float
    reservation_rate: float


def _apportion(total: int, weights: list[float], minimum: int) -> list[int]:
    """Integer shares summing to `total`, each ≥ `minimum` (largest-remainder method)."""
    rest = total - minimum * len(weights)
    w = sum(weights)
    exact = [rest * x / w for x in weights]
    out = [minimum + int(e) for e in exact]
    for i in sorted(range(len(weights)), key=lambda i: (-(exact[i] - int(exact[i])), i))[: total - sum(out)]:
        out[i] += 1
    return out


def weighted_choice(rng: random.Random, table: dict[str, float]) -> Any:
    return rng.choices(list(table), weights=list(table.values()))[0]


def _code(a: str, b: str, used: set[str], spare: Iterator[str]) -> str:
    """A unique 3-character operator id: brand initials plus a letter/digit, else the next spare code."""
    for cand in (a[0] + b[0] + ch for ch in ALNUM[10:36] + ALNUM[:10]):
        if cand not in used:
            return cand
    return next(c for c in spare if c not in used)


def plan_network(connectors: int, seed: int, cpos: int | None) -> tuple[list[Cpo], BapSpec]:
    rng = random.Random(f"ubc-loadtest:{seed}:plan")
    n = cpos if cpos is not None else min(600, max(5, round(connectors / 400)))
    n = max(1, min(n, connectors // 2))
    allot = _apportion(connectors, [(i + 1) ** -0.85 for i in range(n)], min(2, connectors))
    c = cities()
    state_pop: dict[str, int] = {}
    for s, p in zip(c.state, c.pop):
        state_pop[s] = state_pop.get(s, 0) + p
    brands = [(a, b) for a in BRAND_A for b in BRAND_B]
    rng.shuffle(brands)
    width = max(3, len(str(n - 1)))
    used: set[str] = set()
    upper = ALNUM[10:36] + ALNUM[:10]
    spare = (x + y + z for x in upper for y in upper for z in upper)  # 36^3 codes > MAX_CPOS
    plan = []
    for i in range(n):
        a, b = brands[i % len(brands)]
        brand = f"{a}{b}" + (f" {i // len(brands) + 1}" if i >= len(brands) else "")
        code = _code(a, b, used, spare)
        used.add(code)
        provider_id = f"cpo-{i:0{width}d}"
        sub = f"{provider_id}.bpp.ubc.example"
        seed_b64, pub = derive_keypair(seed, sub)
        bpp = BppSpec(sub, f"https://{sub}/beckn", derive_key_id(seed, sub), seed_b64, pub, provider_id,
                      f"{brand} {rng.choice(LEGAL_FORMS)}", code, allot[i], math.ceil(allot[i] / MAX_CATALOG_CONNECTORS))
        if i < max(3, n // 8):  # the big operators are national
            states, corridors, share = None, tuple(range(len(CORRIDORS))), 0.15
        else:  # the long tail is regional: 1-3 states, population-weighted
            pool = dict(state_pop)
            chosen = []
            for _ in range(rng.choice((1, 1, 2, 2, 3))):
                s = weighted_choice(rng, pool)
                chosen.append(s)
                del pool[s]
            states = tuple(sorted(chosen))
            corridors = tuple(k for k in range(len(CORRIDORS))
                              if {c.state[j] for j in corridor_ends(k)} & set(states))
            share = 0.10 if corridors else 0.0
        payments = tuple(m for m, p in PAYMENTS if rng.random() < p)
        plan.append(Cpo(i, bpp, brand, states, corridors, share, rng.random() < 0.4, payments,
                        rng.uniform(0.9, 1.12), rng.uniform(0.3, 0.95)))
    bap_id = "loadtest.bap.ubc.example"
    bap = BapSpec(bap_id, f"https://{bap_id}/beckn", derive_key_id(seed, bap_id), *derive_keypair(seed, bap_id))
    return plan, bap
