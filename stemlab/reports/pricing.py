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

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from ..services import SERVICES, pricing_module
from ..services._pricing import Pack, Plan, ServicePricing

__all__ = ["Pack", "Plan", "ServicePricing", "PRICING", "Volume", "cheapest_packs", "monthly_cost", "price_table",
           "provider_monthly", "units_per_song", "usd_per_audio_hour"]

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


@dataclass(frozen=True)
class Volume:
    """The buyer's stated volume: ``songs_per_month`` of
    ``seconds_per_song`` on average, and an optional monthly budget (USD)."""

    songs_per_month: int = 1000
    seconds_per_song: float = 210.0
    budget_usd_month: float | None = None

    @property
    def audio_minutes(self) -> float:
        return self.songs_per_month * self.seconds_per_song / 60.0

    def describe(self) -> str:
        b = f", budget ${self.budget_usd_month:,.2f}/month" if self.budget_usd_month is not None else ", no budget set"
        return (f"{self.songs_per_month:,} songs/month × {self.seconds_per_song / 60:.2g} min "
                f"= {self.audio_minutes:,.0f} audio min/month{b}")


def _plan_text(combo: Mapping[str, int]) -> str:
    return " + ".join(f"{n} × {k} pack" for k, n in combo.items())


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
    ``service``: units consumed, and USD — at ``usd_per_unit`` (your price
    per table unit) when given, else at the cheapest combination of the
    published packs covering the volume (AI Stem Splitter), else unknown
    (``usd`` None, ``note``: why and how to set it; never 0).
    ``plan`` names what is bought; ``usd_per_audio_min`` and
    ``usd_per_audio_hour`` divide by the audio volume."""
    p = PRICING[service]
    assert p.units_per_song is not None
    per_song = p.units_per_song(seconds_per_song, **unit_kwargs) if unit_kwargs else p.units_per_song(seconds_per_song)
    units = per_song * songs_per_month
    if include_free:
        units = max(0.0, units - p.free_units)
    audio_min = songs_per_month * seconds_per_song / 60
    out: dict[str, Any] = {"service": service, "unit": p.unit, "units": units, "as_of": p.as_of,
                              "source": p.source, "billing": p.billing, "note": ""}
    if usd_per_unit is not None:
        usd = units * float(usd_per_unit)
        out.update(
            usd=usd, packs={}, plan=f"{units:,.0f} {p.unit} at your price ${float(usd_per_unit):g}/{p.unit[:-1]}"
        )
    elif p.packs:
        usd, combo = cheapest_packs(units, p.packs)
        out.update(usd=usd, packs=combo, plan=_plan_text(combo) or "nothing to buy")
    else:
        out.update(usd=None, packs={}, plan="", note=p.how_to_set())
    usd_v = out["usd"]
    if usd_v is None or not audio_min:
        out.update(usd_per_audio_hour=None, usd_per_audio_min=None)
    else:
        out.update(usd_per_audio_hour=float(usd_v) / (audio_min / 60), usd_per_audio_min=float(usd_v) / audio_min)
    return out


def units_per_song(family: str, variant: str | None, params: Mapping[str, Any] | str | None,
                   seconds: float) -> tuple[float, str]:
    """(table units, note) one song of ``seconds`` uses at provider
    ``family:variant`` with ``params`` — from the provider's own estimate
    (MVSEP: its algorithm's ``price_coefficient``), in the units of the
    service's price table."""
    from ..providers import create

    sp = PRICING[family]
    ref: dict[str, Any] = {"provider": f"{family}:{variant}" if variant else family}
    if isinstance(params, str) and params:
        try:
            params = json.loads(params)
        except ValueError:
            params = None
    if isinstance(params, Mapping) and params:
        ref["params"] = dict(params)
    try:
        est = create(ref).estimate_cost(float(seconds))
        free = sp.free_job(est.credits, float(seconds))
        if free:  # the documents make this song free (Dango: under 30 s, free points only): no paid units
            return 0.0, free
        return sp.units_of_native(est.credits), ""
    except Exception as e:  # the variant or its parameters no longer resolve: the table's own formula
        assert sp.units_per_song is not None
        return float(sp.units_per_song(float(seconds))), f"service formula ({type(e).__name__}: {e})"


def provider_monthly(
    job: Mapping[str, Any] | pd.Series, volume: Volume, prices: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """What ``volume`` costs at the provider of ``job`` (a jobs row):
    ``usd_per_month``, ``usd_per_audio_min``, ``plan`` (the cheapest plan
    covering the volume), ``units_per_month`` + ``unit``, ``basis`` and
    ``note`` (why USD is unknown and how to set it). Local providers:
    $0 (compute time only). ``prices``: service → USD per table unit (your
    price; else the price the job was run with, else the published one)."""
    family, kind = str(job.get("family", "")), str(job.get("kind", ""))
    if kind != "remote" or family not in PRICING:
        return {"usd_per_month": 0.0, "usd_per_audio_min": 0.0, "plan": "local: compute time only",
                "units_per_month": float("nan"), "unit": "", "basis": "local", "note": ""}
    sp = PRICING[family]
    variant = job.get("variant")
    variant = variant if isinstance(variant, str) and variant else None  # NaN from a parquet/CSV row: none
    per_song, how = units_per_song(family, variant, job.get("params"), volume.seconds_per_song)
    price = (prices or {}).get(family)
    if price is None:
        upu = job.get("usd_per_unit")
        basis = str(job.get("price_basis") or "")
        if upu is not None and isinstance(upu, (int, float)) and math.isfinite(upu) and basis.startswith("your price"):
            price = float(upu)
    units = per_song * volume.songs_per_month
    if price is not None:
        usd: float | None = units * float(price)
        plan = f"{units:,.0f} {sp.unit} at your price ${float(price):g}/{sp.unit[:-1]}"
    elif sp.packs:
        usd, combo = cheapest_packs(units, sp.packs)
        plan = _plan_text(combo)
    else:
        usd, plan = None, ""
    am = volume.audio_minutes
    return {"usd_per_month": float("nan") if usd is None else float(usd),
            "usd_per_audio_min": float("nan") if usd is None or not am else float(usd) / am,
            "plan": plan, "units_per_month": units, "unit": sp.unit, "as_of": sp.as_of,
            "basis": how, "note": sp.how_to_set() if usd is None else ""}


def price_table(prices: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Every service's dated table as rows: plans with billing kind, price,
    units, USD per unit (or "not published"), source and date."""
    rows = []
    for name, sp in PRICING.items():
        given = (prices or {}).get(name)
        for pl in sp.plans or (Plan("—", sp.billing, None, None),):
            upu = pl.usd_per_unit
            rows.append({"service": name, "plan": pl.name, "billing": pl.billing,
                         "price_usd": pl.price_usd, "units": pl.units, "unit": sp.unit,
                         "usd_per_unit": upu, "your_usd_per_unit": given,
                         "notes": pl.notes, "source": sp.source, "as_of": sp.as_of})
    return rows


def usd_per_audio_hour(service: str) -> list[dict[str, object]]:
    """Cost of one hour of input audio at each pack of a service."""
    p = PRICING[service]
    return [{"service": service, "pack": k.name, "price_usd": k.price_usd, "usd_per_min": k.usd_per_min,
             "usd_per_audio_hour": k.usd_per_min * 60, "as_of": p.as_of} for k in p.packs]
