"""Dated pricing tables of the remote services and what-if volume planning.

Prices change; every table says when and where it was read. Where a service
publishes no money price (MVSEP credits, Dango points, the Suno gateway), the
unit consumption is exact and the money figure needs the buyer's own price
per unit (a notebook parameter), never a guess.

Sources: the seeds in ``shared/seeds`` as restated in ``remote-apis.md``
(AI Stem Splitter packs and free minutes; MVSEP's credit formula; Dango's
12 free points under 30 s and 60–120 paid points per song).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

__all__ = ["Pack", "ServicePricing", "PRICING", "cheapest_packs", "monthly_cost", "usd_per_audio_hour"]


@dataclass(frozen=True)
class Pack:
    name: str
    price_usd: float
    minutes: float  # of input audio

    @property
    def usd_per_min(self) -> float:
        return self.price_usd / self.minutes


@dataclass(frozen=True)
class ServicePricing:
    service: str
    as_of: str  # when stemlab's table was read from the source (YYYY-MM-DD)
    source: str
    unit: str  # what is consumed: "minutes", "credits", "points", "calls"
    packs: tuple[Pack, ...] = ()
    free_units: float = 0.0
    notes: str = ""
    #: units consumed by one song of ``seconds`` (service's own rounding)
    units_per_song: Callable[[float], float] | None = field(default=None, repr=False, compare=False)


def _aiss_units(seconds: float) -> float:
    return seconds / 60.0  # minutes; API credits are seconds (1 credit = 1 s)


def _mvsep_units(seconds: float, price_coefficient: float = 1.0) -> float:
    # credits = floor(duration_s * price_coefficient / 60) ?: 1
    return float(max(1, math.floor(seconds * price_coefficient / 60.0)))


def _dango_units(seconds: float, points_per_song: float = 90.0) -> float:
    return 0.0 if seconds < 30 else points_per_song  # < 30 s uses 12 free points


PRICING: dict[str, ServicePricing] = {
    "aistemsplitter": ServicePricing(
        service="aistemsplitter", as_of="2026-11-22",
        source="AI Stem Splitter developer docs (seeds 000/001, undated) and SDK aistemsplitter 0.1.1 (2026-05)",
        unit="minutes", free_units=10.0,
        packs=(Pack("50 min", 6.99, 50), Pack("150 min", 15.00, 150), Pack("500 min", 39.99, 500)),
        notes="Minute packs never expire; first 10 minutes free; API credits are seconds of input.",
        units_per_song=_aiss_units,
    ),
    "mvsep": ServicePricing(
        service="mvsep", as_of="2026-11-22", source="MVSEP API docs (seed 002, undated) and mvsep-cli 1.2.0 (2026-03)",
        unit="credits",
        notes="credits = max(1, floor(duration_s × price_coefficient / 60)) per job (premium); mirror=1 adds 1 credit. "
              "The money price of a credit is not published in the API docs: pass usd_per_credit.",
        units_per_song=_mvsep_units,
    ),
    "dango": ServicePricing(
        service="dango", as_of="2026-11-22", source="Dango vocal-remover API docs (seed 003, last updated 2022-02-09)",
        unit="points",
        notes="Songs under 30 s use 12 free points; otherwise 60–120 paid points per song (table on the vendor site; "
              "90 assumed as the midpoint); failed jobs are refunded. Money per point: pass usd_per_point.",
        units_per_song=_dango_units,
    ),
    "suno": ServicePricing(
        service="suno", as_of="2026-11-22", source="Suno stems gateway docs (seed 004, modified 2025-05-06)",
        unit="calls",
        notes="The gateway separates Suno clips only; pricing is not documented: pass usd_per_call.",
        units_per_song=lambda seconds: 1.0,
    ),
}


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
