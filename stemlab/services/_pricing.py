"""The shape of a service's dated price table (``SERVICE_PRICING`` in each
``stemlab/services/<name>/pricing.py``), read by :mod:`stemlab.runs.results`
(USD and native units of every job row), :mod:`stemlab.reports.pricing`
(volume planning, plan choice) and the providers' cost estimates.

Prices change; every table says when and where it was read. A service that
publishes no money price for its unit (MVSEP credits, Dango points, the Suno
gateway's calls) has ``usd_per_unit = None``: its USD is **unknown** — NaN in
the job rows with the reason and the way to set it (``price_key`` in the spec's
``providers[i].price`` or the procurement notebook) — never $0.

Units: ``unit`` is what the price table counts (AI Stem Splitter: minutes of
input, MVSEP: credits, Dango: points, Suno: calls); ``native_unit`` is what
the provider records in a job row's ``credits``/``credit_unit`` columns
(AI Stem Splitter's API counts credits in *seconds*; ``native_per_unit`` = 60
native units per table unit).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Pack", "Plan", "PriceQuote", "ServicePricing", "price_of", "pricing_of"]


class Pack(NamedTuple):
    """A prepaid pack: ``name``, ``price_usd`` for ``minutes`` of input audio."""

    name: str
    price_usd: float
    minutes: float

    @property
    def usd_per_min(self) -> float:
        return self.price_usd / self.minutes


@dataclass(frozen=True)
class Plan:
    """One way to buy the service, as its documents describe it.

    ``billing``: ``"prepaid pack"`` (one-off, never expires), ``"subscription"``
    (per month), ``"pay as you go"`` or ``"free tier"``. ``price_usd`` None:
    the money price is not published (then ``units`` may still be known).
    ``units``: table units included (None: not published / not limited)."""

    name: str
    billing: str
    price_usd: float | None
    units: float | None
    notes: str = ""

    @property
    def usd_per_unit(self) -> float | None:
        if self.price_usd is None or not self.units:
            return None
        return self.price_usd / self.units


class PriceQuote(NamedTuple):
    """USD per table unit and where it comes from; ``usd_per_unit`` None →
    unknown, ``reason`` says why and how to set it."""

    usd_per_unit: float | None
    basis: str
    reason: str = ""


@dataclass(frozen=True)
class ServicePricing:
    service: str
    as_of: str  # when stemlab's table was read from the source (YYYY-MM-DD)
    source: str
    unit: str  # what the price table counts: "minutes", "credits", "points", "calls"
    packs: tuple[Pack, ...] = ()
    free_units: float = 0.0
    notes: str = ""
    #: units consumed by one song of ``seconds`` (service's own rounding); keyword
    #: arguments are the service's knobs (MVSEP ``price_coefficient``, Dango ``points_per_song``)
    units_per_song: Callable[..., float] | None = field(default=None, repr=False, compare=False)
    #: every way to buy it (packs included), in the documents' words
    plans: tuple[Plan, ...] = ()
    #: how the service bills, in one line ("prepaid minute packs, no subscription" …)
    billing: str = ""
    #: the job row's ``credit_unit`` for this service and how many of them make one table unit
    native_unit: str = ""
    native_per_unit: float = 1.0
    #: a published USD price per table unit (None: not published)
    usd_per_unit: float | None = None
    #: the key of ``providers[i].price`` (and the provider option) that sets USD per table unit
    price_key: str = ""
    #: why USD is unknown without ``price_key``, quoting the documents
    unknown_price: str = ""
    #: the notebook parameter that sets the price in ``procurement.ipynb``
    notebook_parameter: str = ""
    #: ``(native units, audio seconds) -> reason`` when the documents make such a job free ('' otherwise)
    free_rule: Callable[[float | None, float | None], str] | None = field(default=None, repr=False, compare=False)

    # --------------------------------------------------------------- prices
    def quote(self, override: float | None = None, *, pack: str | None = None) -> PriceQuote:
        """USD per table unit: ``override`` (the buyer's own price) when
        given, else the published price (``pack``: that pack's; default the
        smallest pack — the conservative figure budget caps use), else
        unknown with the reason and how to set it."""
        if override is not None:
            return PriceQuote(float(override), f"your price: {self.price_key}={override:g} (spec/notebook)")
        if self.packs:
            p = next((k for k in self.packs if pack is None or k.name == pack), None)
            if p is not None:
                return PriceQuote(p.usd_per_min, f"{p.name} pack ${p.price_usd:g} (as of {self.as_of})")
        if self.usd_per_unit is not None:
            return PriceQuote(self.usd_per_unit, f"published price (as of {self.as_of})")
        return PriceQuote(None, "", self.how_to_set())

    def how_to_set(self) -> str:
        """'price unknown: <why>; set …' — the sentence every unknown USD carries."""
        why = self.unknown_price or f"{self.service} publishes no USD price per {self.unit[:-1]}"
        key = self.price_key or "usd_per_unit"
        where = f"providers[i].price.{key} in the run spec"
        if self.notebook_parameter:
            where += f", or {self.notebook_parameter} in notebooks/procurement.ipynb"
        return f"price unknown: {why}; set {where}"

    def provider_options(self, price: dict[str, object]) -> dict[str, object]:
        """The provider options that set ``price`` (a spec's
        ``providers[i].price``): ``usd_per_credit`` (USD per job-row unit)
        becomes the service's own key per table unit; ``pack`` passes as is."""
        out: dict[str, object] = {}
        if price.get("usd_per_credit") is not None:
            out[self.price_key] = float(price["usd_per_credit"]) * self.native_per_unit  # type: ignore[arg-type]
        if price.get(self.price_key) is not None:
            out[self.price_key] = float(price[self.price_key])  # type: ignore[arg-type]
        if price.get("pack") is not None:
            out["pack"] = price["pack"]
        return out

    def override_of(self, options: dict[str, object]) -> tuple[float | None, str | None]:
        """(USD per table unit, pack) a provider's options set, if any."""
        v = options.get(self.price_key)
        pack = options.get("pack")
        return (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None,
                str(pack) if pack else None)

    def units_of_native(self, native: float) -> float:
        """Table units of ``native`` job-row units (AI Stem Splitter: seconds → minutes)."""
        return float(native) / self.native_per_unit

    def job_usd(self, native: float | None, audio_seconds: float | None, override: float | None = None,
                *, pack: str | None = None) -> tuple[float, str, str]:
        """``(usd, basis, reason)`` of one job that used ``native`` job-row
        units: table units × the price (``override``, else ``pack``'s or the
        published one) when it is known, else NaN with the reason.
        A job the documents make free (Dango's free points for songs under
        30 s: ``free_rule``) costs $0 with that reason as its basis."""
        free = self.free_job(native, audio_seconds)
        if free:
            return 0.0, free, ""
        if native is not None and float(native) == 0:
            return 0.0, "no units charged", ""
        q = self.quote(override, pack=pack)
        if q.usd_per_unit is None:
            return math.nan, "", q.reason
        if native is None or not math.isfinite(float(native)):
            return math.nan, q.basis, "no units recorded for this job"
        return self.units_of_native(native) * q.usd_per_unit, q.basis, ""

    def free_job(self, native: float | None, audio_seconds: float | None) -> str:
        """A reason this job costs no money by the documents ('' if it may cost)."""
        return self.free_rule(native, audio_seconds) if self.free_rule is not None else ""


def pricing_of(family: str) -> ServicePricing | None:
    """The dated table of a remote service family (None: not a service of :data:`stemlab.services.SERVICES`)."""
    from . import SERVICES, pricing_module

    return pricing_module(family).SERVICE_PRICING if family in SERVICES else None


def price_of(family: str, options: dict[str, object]) -> tuple[ServicePricing | None, PriceQuote]:
    """The table and the USD-per-unit quote a provider of ``family`` with
    ``options`` runs at (its ``price_key``/``pack`` options: the spec's
    ``providers[i].price``). A family that is no service (local providers):
    ``(None, PriceQuote(0.0, 'local: no service charge'))``."""
    sp = pricing_of(family)
    if sp is None:
        return None, PriceQuote(0.0, "local: no service charge (compute time only)")
    override, pack = sp.override_of(options)
    return sp, sp.quote(override, pack=pack)
