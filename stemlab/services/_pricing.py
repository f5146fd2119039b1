"""The shape of a service's dated price table (``SERVICE_PRICING`` in each
``stemlab/services/<name>/pricing.py``), read by
:mod:`stemlab.reports.pricing` for volume planning.

Prices change; every table says when and where it was read. Where a service
publishes no money price (MVSEP credits, Dango points, the Suno gateway), the
unit consumption is exact and the money figure needs the buyer's own price
per unit, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

__all__ = ["Pack", "ServicePricing"]


class Pack(NamedTuple):
    """A prepaid pack: ``name``, ``price_usd`` for ``minutes`` of input audio."""

    name: str
    price_usd: float
    minutes: float

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
    #: units consumed by one song of ``seconds`` (service's own rounding); keyword
    #: arguments are the service's knobs (MVSEP ``price_coefficient``, Dango ``points_per_song``)
    units_per_song: Callable[..., float] | None = field(default=None, repr=False, compare=False)
