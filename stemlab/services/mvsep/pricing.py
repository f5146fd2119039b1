"""MVSEP prices: credits per job (seed 002) — the one copy of the formula.

Seed 002, "获取分离类型" (``GET /app/algorithms``), field ``price_coefficient``:
"用于计算工作从高级用户那里消耗了多少积分。使用此公式 :
floor(<音频文件时长(秒)> * price_coefficient / 60)?:1" — a Premium user's
job costs ``floor(duration_s × price_coefficient / 60)`` credits, and 1
when that is 0. Seed 002, "获取结果": ``mirror=1`` on ``/separation/get``
"需要 api_token 和 1 个积分" — one more credit. ``/app/user``'s
``premium_minutes`` is "用户剩余积分" (the credits left) and ``premium_enabled``
"用户是否允许花费积分" (whether the account may spend them): an account with
premium disabled spends no credits and runs 1 job at a time ("非 Premium 用户
只能请求 1 个并行任务"; Premium: 10). The money price of a credit, and what
a Premium plan costs, are **not published in the API docs**: stemlab leaves
USD unknown unless you set ``usd_per_credit``.

Used by :class:`~stemlab.services.mvsep.provider.MVSep` (cost estimates and
the final cost), :mod:`stemlab.runs.results` and :mod:`stemlab.reports.pricing`.
"""

from __future__ import annotations

import math

from .._pricing import Plan, ServicePricing

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
    service="mvsep", as_of="2026-12-06", source="MVSEP API docs (seed 002, undated) and mvsep-cli 1.2.0 (2026-03)",
    unit="credits",
    notes="credits = max(1, floor(duration_s × price_coefficient / 60)) per job (premium); mirror=1 adds 1 credit. "
          "The money price of a credit is not published in the API docs: pass usd_per_credit.",
    units_per_song=_units_per_song,
    plans=(Plan("free account", "free tier", 0.0, None,
                "premium disabled: no credits spent, 1 parallel job, non-premium queue (its capacity is not "
                "published, so stemlab does not plan a monthly volume on it)"),
           Plan("premium credits", "credits (premium account)", None, None,
                "10 parallel jobs; credits per job by the formula; the price of a credit or of premium is not "
                "published in the API docs")),
    billing="credits spent per job by a premium account (price per credit not published in the API docs); "
            "free accounts spend none but run one job at a time",
    native_unit="mvsep_credits",
    price_key="usd_per_credit",
    unknown_price="MVSEP's API docs (seed 002) give the credits per job but no USD price per credit",
    notebook_parameter="usd_per_mvsep_credit",
)
