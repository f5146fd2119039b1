"""Suno stems gateway prices — the one copy (provider cost estimates,
:mod:`stemlab.runs.results` and :mod:`stemlab.reports.pricing` use it).

Seed 004 (``GET /suno/act/stems/{clip_id}``, modified 2025-05-06) documents
no price, plan or quota — **not published in the API docs**. stemlab counts
one "call" per stem job (asking again for the same clip returns the same job,
not a new charge — the provider's documented assumption); USD stays unknown
unless you set ``usd_per_call``.
"""

from __future__ import annotations

from .._pricing import Plan, ServicePricing

__all__ = ["calls_for", "SERVICE_PRICING"]


def calls_for(seconds: float) -> float:
    """Calls one clip of ``seconds`` uses: 1, whatever its length."""
    return 1.0


SERVICE_PRICING = ServicePricing(
    service="suno", as_of="2026-12-06", source="Suno stems gateway docs (seed 004, modified 2025-05-06)",
    unit="calls",
    notes="The gateway separates Suno clips only; pricing is not documented: pass usd_per_call.",
    units_per_song=calls_for,
    plans=(Plan("gateway calls", "not published", None, None,
                "the gateway page documents the endpoint only: no price, plan, quota or billing unit"),),
    billing="not published in the API docs (stemlab counts one call per clip)",
    native_unit="calls",
    price_key="usd_per_call",
    unknown_price="the Suno stems gateway's docs (seed 004) publish no price",
    notebook_parameter="usd_per_suno_call",
)
