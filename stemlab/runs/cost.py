"""Budget caps: money (USD, over all paid jobs) and per-provider credits.

Before a paid job is submitted its estimate is *reserved*; if what was already
charged (by this and earlier runs in the same ledger) plus what is reserved
plus this estimate would exceed a cap, the job is refused with
:class:`~stemlab.errors.BudgetExceeded` and becomes a ``budget`` row. When the
job is charged the reservation is replaced by the real cost."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import BudgetExceeded
from ..types import Cost
from .ledger import Ledger

__all__ = ["Budget", "PlanCost", "summarize_costs"]

_EPS = 1e-9


@dataclass
class _Cap:
    usd: float | None = None
    credits: float | None = None


class Budget:
    def __init__(
        self,
        ledger: Ledger,
        usd: float | None = None,
        per_provider: Mapping[str, tuple[float | None, float | None]] | None = None,
    ) -> None:
        self.ledger = ledger
        self.total = _Cap(usd=usd)
        self.caps = {p: _Cap(*c) for p, c in (per_provider or {}).items()}
        self._reserved: dict[str, tuple[str, Cost]] = {}  # job_key → (provider, estimate)
        self._lock = threading.Lock()

    @property
    def limited(self) -> bool:
        return self.total.usd is not None or any(c.usd is not None or c.credits is not None for c in self.caps.values())

    def _reserved_sum(self, provider: str | None) -> tuple[float, float]:
        usd = cr = 0.0
        for prov, c in self._reserved.values():
            if provider is None or prov == provider:
                usd += c.usd
                cr += c.credits
        return usd, cr

    def reserve(self, job_key: str, provider: str, estimate: Cost) -> None:
        """Reserve ``estimate`` for a job or raise BudgetExceeded (nothing is
        reserved then). Free jobs (zero estimate) always pass."""
        with self._lock:
            if estimate.usd <= 0 and estimate.credits <= 0:
                return
            if self.total.usd is not None:
                spent, _ = self.ledger.charged()
                held, _ = self._reserved_sum(None)
                if spent + held + estimate.usd > self.total.usd + _EPS:
                    raise BudgetExceeded(
                        f"{provider}: estimated ${estimate.usd:.4f} would exceed the budget "
                        f"(${spent:.4f} charged + ${held:.4f} reserved of ${self.total.usd:.4f})",
                        provider=provider, cap_usd=self.total.usd,
                    )
            cap = self.caps.get(provider)
            if cap is not None:
                spent_usd, spent_cr = self.ledger.charged(provider)
                held_usd, held_cr = self._reserved_sum(provider)
                if cap.usd is not None and spent_usd + held_usd + estimate.usd > cap.usd + _EPS:
                    raise BudgetExceeded(
                        f"{provider}: estimated ${estimate.usd:.4f} would exceed its budget "
                        f"(${spent_usd:.4f} charged + ${held_usd:.4f} reserved of ${cap.usd:.4f})",
                        provider=provider, cap_usd=cap.usd,
                    )
                if cap.credits is not None and spent_cr + held_cr + estimate.credits > cap.credits + _EPS:
                    raise BudgetExceeded(
                        f"{provider}: estimated {estimate.credits:g} {estimate.credit_unit or 'credits'} would exceed "
                        f"its budget ({spent_cr:g} charged + {held_cr:g} reserved of {cap.credits:g})",
                        provider=provider, cap_credits=cap.credits,
                    )
            self._reserved[job_key] = (provider, estimate)

    def release(self, job_key: str) -> None:
        """Drop a reservation (the job was charged — the ledger now holds the
        real cost — or it ended without a charge)."""
        with self._lock:
            self._reserved.pop(job_key, None)


@dataclass
class PlanCost:
    """Dry-run totals for one provider."""

    provider: str
    jobs: int = 0
    cached: int = 0
    usd: float = 0.0
    credits: float = 0.0
    credit_unit: str = ""
    compute_seconds: float = 0.0
    audio_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def add(self, c: Cost, seconds: float) -> None:
        self.jobs += 1
        self.usd += c.usd
        self.credits += c.credits
        self.credit_unit = self.credit_unit or c.credit_unit
        self.compute_seconds += c.compute_seconds
        self.audio_seconds += seconds


def summarize_costs(plans: Mapping[str, PlanCost]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for p in plans.values():
        rows.append({
            "provider": p.provider, "jobs": p.jobs, "cached": p.cached,
            "audio_min": round(p.audio_seconds / 60, 2), "usd": round(p.usd, 4),
            "credits": round(p.credits, 2), "credit_unit": p.credit_unit,
            "compute_s": round(p.compute_seconds, 1),
        })
    rows.append({
        "provider": "TOTAL", "jobs": sum(p.jobs for p in plans.values()),
        "cached": sum(p.cached for p in plans.values()),
        "audio_min": round(sum(p.audio_seconds for p in plans.values()) / 60, 2),
        "usd": round(sum(p.usd for p in plans.values()), 4), "credits": "", "credit_unit": "",
        "compute_s": round(sum(p.compute_seconds for p in plans.values()), 1),
    })
    return rows
