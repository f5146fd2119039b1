"""AI Stem Splitter prices — the one copy (provider cost estimates and
:mod:`stemlab.reports.pricing` both use it).

Seed 000, "Do credits expire if I don't use them?": "Credit packs never
expire — purchase $6.99 / 50 minutes, $15 / 150 minutes, or $39.99 / 500
minutes … The first 10 minutes are free". The API counts credits in seconds
of input (SDK ``aistemsplitter`` 0.1.1: ``GET /credits`` ``unit: "seconds"``,
``creditsUsed`` an integer); stemlab rounds a job up to whole seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import ConfigError
from .._pricing import Pack, Plan, ServicePricing

__all__ = ["PricingTable", "PRICING", "credits_for", "SERVICE_PRICING"]


@dataclass(frozen=True)
class PricingTable:
    """Minute packs in USD. ``as_of``: when the table was read (YYYY-MM-DD)."""

    as_of: str
    source: str
    packs: tuple[Pack, ...]  # (name, USD, minutes)
    free_minutes: float
    credit_unit: str = "seconds"  # API credits: 1 credit = 1 s of input

    def usd_per_minute(self, pack: str | None = None) -> float:
        """USD per input minute at ``pack`` (default: the smallest pack, the
        conservative figure for budget caps)."""
        for name, usd, minutes in self.packs:
            if pack is None or name == pack:
                return usd / minutes
        raise ConfigError(f"aistemsplitter: unknown pack {pack!r}; valid: {[p[0] for p in self.packs]}", field="pack")


PRICING = PricingTable(
    as_of="2026-12-06",
    source="AI Stem Splitter developer docs (seeds 000/001, undated) and SDK aistemsplitter 0.1.1 (2026-05)",
    packs=(Pack("50 min", 6.99, 50.0), Pack("150 min", 15.00, 150.0), Pack("500 min", 39.99, 500.0)),
    free_minutes=10.0,
)


def credits_for(seconds: float) -> float:
    """Credits (seconds of input) one job of ``seconds`` uses: whole seconds, rounded up."""
    return float(math.ceil(max(0.0, float(seconds))))


def _minutes_per_song(seconds: float) -> float:
    return credits_for(seconds) / 60.0


SERVICE_PRICING = ServicePricing(
    service="aistemsplitter", as_of=PRICING.as_of, source=PRICING.source, unit="minutes",
    free_units=PRICING.free_minutes, packs=PRICING.packs,
    notes="Minute packs never expire; first 10 minutes free; API credits are seconds of input.",
    units_per_song=_minutes_per_song,
    plans=(Plan("free minutes", "free tier", 0.0, PRICING.free_minutes, "first 10 minutes, no card needed; once"),
           *(Plan(f"{p.name} pack", "prepaid pack", p.price_usd, p.minutes, "never expires") for p in PRICING.packs)),
    billing="prepaid minute packs that never expire (per minute of input audio); no subscription, no auto-renewal",
    native_unit="seconds", native_per_unit=60.0,
    price_key="usd_per_minute",
    notebook_parameter="usd_per_aistemsplitter_minute",
)
