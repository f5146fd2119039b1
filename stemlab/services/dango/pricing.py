"""Dango prices in points (seed 003) — the one copy (provider cost estimates
and :mod:`stemlab.reports.pricing` both use it).

Seed 003, "上传歌曲" → ``/vocal-remover/upload/{channel}/result``: "一旦调用此接口,
您就会开始扣除点数余额,如歌曲时长小于30秒,则扣除12点免费点数,否则扣除60 ~
120点付费点数" — a song under 30 s uses 12 free points, any other 60–120 paid
points (the exact table is on the vendor's site, not in the seed); "如果歌曲处理
失败,您的点数将返回,不会扣费" — failed songs are refunded. The status field
``cost`` is "歌曲本次扣除的付费点数" (meaningless under 30 s).

Default paid points per song: **120**, the upper bound the seed gives — the
only figure in the seed's range that never under-estimates a budget. (Until
2026-11 ``stemlab.reports.pricing`` assumed 90, "the midpoint", which the
seed does not state; the provider already used 120.) Pass
``points_per_song`` (provider option / ``monthly_cost`` keyword) for your
account's real tier, and ``usd_per_point`` for money: the USD price of a
point is **not published in the API docs** (seed 003 points to a "工具与价格
信息" page on the vendor's site that stemlab cannot read here), so USD stays
unknown unless you set it. A song under 30 s uses free points only: $0.
"""

from __future__ import annotations

from .._pricing import Plan, ServicePricing

__all__ = ["SHORT_SECONDS", "FREE_POINTS", "PAID_POINTS", "points_for_seconds", "SERVICE_PRICING"]

SHORT_SECONDS = 30.0  #: songs shorter than this use free points
FREE_POINTS = 12.0  #: free points per short song
PAID_POINTS = (60.0, 120.0)  #: paid points per song of ≥ 30 s (the exact table is on the vendor's site)


def points_for_seconds(seconds: float, paid_per_song: float = PAID_POINTS[1]) -> tuple[float, float]:
    """``(free, paid)`` points one song of ``seconds`` uses: under 30 s 12
    free points, else ``paid_per_song`` (the docs say 60–120; the default is
    the upper bound, safe for budget caps)."""
    if seconds < SHORT_SECONDS:
        return FREE_POINTS, 0.0
    return 0.0, float(paid_per_song)


def _paid_points_per_song(seconds: float, points_per_song: float = PAID_POINTS[1]) -> float:
    return points_for_seconds(seconds, points_per_song)[1]


def _free_rule(native: float | None, audio_seconds: float | None) -> str:
    if audio_seconds is not None and audio_seconds < SHORT_SECONDS:
        return f"free points (song under {SHORT_SECONDS:g} s: {FREE_POINTS:g} free points, no paid points)"
    return ""


SERVICE_PRICING = ServicePricing(
    service="dango", as_of="2026-12-06", source="Dango vocal-remover API docs (seed 003, last updated 2022-02-09)",
    unit="points",
    notes="Songs under 30 s use 12 free points; otherwise 60–120 paid points per song (table on the vendor site; "
          "120, the seed's upper bound, assumed: pass points_per_song for your tier); failed jobs are refunded. "
          "Money per point: pass usd_per_point.",
    units_per_song=_paid_points_per_song,
    plans=(Plan("free points", "free tier", 0.0, None,
                "songs under 30 s use 12 free points each; the free-point allowance is not published"),
           Plan("paid points", "points balance", None, None,
                "60–120 paid points per song of ≥ 30 s (the exact table and the price of points are on the "
                "vendor's site, not in the API docs); failed songs are refunded")),
    billing="points balance: 60–120 paid points per song (USD per point not published in the API docs); "
            "songs under 30 s use free points",
    native_unit="dango_points",
    price_key="usd_per_point",
    unknown_price="Dango's API docs (seed 003) give 60–120 paid points per song but no USD price per point",
    notebook_parameter="usd_per_dango_point",
    free_rule=_free_rule,
)
