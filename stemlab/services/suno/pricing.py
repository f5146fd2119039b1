"""Suno stems gateway prices — the one copy (provider cost estimates and
:mod:`stemlab.reports.pricing` both use it).

Seed 004 (``GET /suno/act/stems/{clip_id}``, modified 2025-05-06) documents
no price. stemlab counts one "call" per stem job (asking again for the same
clip returns the same job, not a new charge — the provider's documented
assumption); ``usd_per_call`` prices it.
"""

from __future__ import annotations

from .._pricing import ServicePricing

__all__ = ["calls_for", "SERVICE_PRICING"]


def calls_for(seconds: float) -> float:
    """Calls one clip of ``seconds`` uses: 1, whatever its length."""
    return 1.0


SERVICE_PRICING = ServicePricing(
    service="suno", as_of="2026-11-22", source="Suno stems gateway docs (seed 004, modified 2025-05-06)",
    unit="calls",
    notes="The gateway separates Suno clips only; pricing is not documented: pass usd_per_call.",
    units_per_song=calls_for,
)
