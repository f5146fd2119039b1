"""Dated pricing tables of the remote services and what-if volume planning.

Prices change; every table says when and where it was read. Where a service
publishes no money price (MVSEP credits, Dango points, the Suno gateway), the
unit consumption is exact and the money figure needs the buyer's own price
per unit (a notebook parameter), never a guess.

The tables and formulas are not written here: :data:`PRICING` holds each
service's ``SERVICE_PRICING`` from its pricing module
(``stemlab/services/<name>/pricing.py``, listed in
:data:`stemlab.services.SERVICES`) — the same formulas the providers' cost
estimates use. Dango's paid points per song default to 120, the upper bound
of the 60–120 that seed 003 gives (this module used to assume 90, a
midpoint the seed does not state); pass ``points_per_song`` to
:func:`monthly_cost` for another tier.
"""

from __future__ import annotations

import math
from typing import Sequence

from ..services import SERVICES, pricing_module
from ..services._pricing import Pack, ServicePricing

__all__ = ["Pack", "ServicePricing", "PRICING", "cheapest_packs", "monthly_cost", "usd_per_audio_hour"]

#: service → its dated table (from ``stemlab/services/<name>/pricing.py``)
PRICING: dict[str, ServicePricing] = {name: pricing_module(name).SERVICE_PRICING for name in SERVICES}


def cheapest_packs(minutes: float, packs: Sequence[Pack]) -> tuple[float, dict[str, int]]:
    """Cheapest combination of packs covering ``minutes`` (exact small DP over
    whole packs). Returns (USD, {pack name: count})."""
    if minutes <= 0:
        return 0.0, {}
    need = int(math.ceil(minutes))
    best = [math.inf] * (need + 1)
    choice: list[tuple[int, int] | None] = [None] * (need + 1)
    best[0] = 0.0
    for m in range(1, need + 1):
        for i, p in enumerate(packs):
            prev = max(0, m - int(p.minutes))
            c = best[prev] + p.price_usd
            if c < best[m] - 1e-12:
                best[m] = c
                choice[m] = (i, prev)
    counts: dict[str, int] = {}
    m = need
    while m > 0:
        ch = choice[m]
        assert ch is not None
        i, m = ch
        counts[packs[i].name] = counts.get(packs[i].name, 0) + 1
    return best[need], counts


def monthly_cost(
    service: str,
    songs_per_month: int,
    seconds_per_song: float,
    *,
    usd_per_unit: float | None = None,
    include_free: bool = False,
    **unit_kwargs: float,
) -> dict[str, object]:
    """What ``songs_per_month`` songs of ``seconds_per_song`` cost at
    ``service``: units consumed, and USD from packs (AI Stem Splitter) or from
    ``usd_per_unit`` (others; None → USD unknown)."""
    p = PRICING[service]
    assert p.units_per_song is not None
    per_song = p.units_per_song(seconds_per_song, **unit_kwargs) if unit_kwargs else p.units_per_song(seconds_per_song)
    units = per_song * songs_per_month
    if include_free:
        units = max(0.0, units - p.free_units)
    out: dict[str, object] = {"service": service, "unit": p.unit, "units": units, "as_of": p.as_of}
    if p.packs:
        usd, combo = cheapest_packs(units, p.packs)
        out.update(usd=usd, packs=combo, usd_per_audio_hour=usd / (songs_per_month * seconds_per_song / 3600))
    elif usd_per_unit is not None:
        usd = units * usd_per_unit
        out.update(usd=usd, packs={}, usd_per_audio_hour=usd / (songs_per_month * seconds_per_song / 3600))
    else:
        out.update(usd=None, packs={}, usd_per_audio_hour=None)
    return out


def usd_per_audio_hour(service: str) -> list[dict[str, object]]:
    """Cost of one hour of input audio at each pack of a service."""
    p = PRICING[service]
    return [{"service": service, "pack": k.name, "price_usd": k.price_usd, "usd_per_min": k.usd_per_min,
             "usd_per_audio_hour": k.usd_per_min * 60, "as_of": p.as_of} for k in p.packs]
