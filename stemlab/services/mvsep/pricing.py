"""MVSEP prices: credits per job (seed 002) — the one copy of the formula.

Seed 002, "获取分离类型" (``GET /app/algorithms``), field ``price_coefficient``:
"用于计算工作从高级用户那里消耗了多少积分。使用此公式 :
floor(<音频文件时长(秒)> * price_coefficient / 60)?:1" — a Premium user's
job costs ``floor(duration_s × price_coefficient / 60)`` credits, and 1
when that is 0. Seed 002, "获取结果": ``mirror=1`` on ``/separation/get``
"需要 api_token 和 1 个积分" — one more credit. Free accounts
(``premium_enabled`` 0) spend no credits. The money price of a credit is not
in the API docs (pass ``usd_per_credit``).

Used by :class:`~stemlab.services.mvsep.provider.MVSep` (cost estimates and
the final cost) and :mod:`stemlab.reports.pricing`.
"""

from __future__ import annotations

import math

from .._pricing import ServicePricing

__all__ = ["credits_for", "MIRROR_CREDITS", "SERVICE_PRICING"]

#: credits one ``mirror=1`` download-link request costs (seed 002)
MIRROR_CREDITS = 1.0


def credits_for(seconds: float, price_coefficient: float = 1.0) -> int:
    """MVSEP credits of one job: ``floor(duration_s · price_coefficient / 60)``,
    at least 1 (the docs' ``?: 1``)."""
    return max(1, int(math.floor(max(0.0, float(seconds)) * float(price_coefficient) / 60.0)))


def _units_per_song(seconds: float, price_coefficient: float = 1.0) -> float:
    return float(credits_for(seconds, price_coefficient))


SERVICE_PRICING = ServicePricing(
    service="mvsep", as_of="2026-11-22", source="MVSEP API docs (seed 002, undated) and mvsep-cli 1.2.0 (2026-03)",
    unit="credits",
    notes="credits = max(1, floor(duration_s × price_coefficient / 60)) per job (premium); mirror=1 adds 1 credit. "
          "The money price of a credit is not published in the API docs: pass usd_per_credit.",
    units_per_song=_units_per_song,
)
