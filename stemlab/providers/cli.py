"""``stemlab providers list`` / ``stemlab providers info ID``.

``list`` keeps two questions apart: does a provider **run here** (a local
model whose weights are present; a remote service against its in-package
sandbox, which every run uses unless ``--live``) and does it **run live**
(the service's API key is set). Filters: ``--kind``, ``--family``,
``--ready`` (runs here now), ``--live`` (key present)."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, StemlabError

if TYPE_CHECKING:
    from .base import Provider, Status

__all__ = ["register_cli", "catalog"]


def _cost_text(family: str, kind: str, est: Any) -> str:
    """Cost of one minute of audio: USD where the price is published, else
    the service's own units and 'USD unknown'; local: compute seconds."""
    if kind == "remote":
        from ..services._pricing import pricing_of

        sp = pricing_of(family)
        unit = {"seconds": "s of input", "mvsep_credits": "credits", "dango_points": "points", "calls": "calls"}.get(
            est.credit_unit, est.credit_unit)
        if sp is not None and sp.quote().usd_per_unit is None:
            return f"{est.credits:g} {unit}/min (USD unknown)"
        if est.usd:
            return f"${est.usd:.4f}/min"
        return f"{est.credits:g} {unit}/min"
    if est.compute_seconds:
        return f"~{est.compute_seconds:.3g} s compute/min"
    return ""


def _live(family: str) -> str:
    from ..services import SERVICES

    info = SERVICES.get(family)
    if info is None:
        return "—"
    return "key present" if os.environ.get(info.env_var) else f"no key: set ${info.env_var}"


def catalog() -> list[dict[str, Any]]:
    """One row per provider family × variant: stems, kind, cost of one
    minute, ``here`` (runs on this machine: ``ready``, ``sandbox`` or why
    not), ``live`` (remote: key present or which variable to set),
    ``status`` (the provider's own status) and ``help`` (the whole story
    when it is not ready: e.g. where demucs looked for weights and how to
    fetch them)."""
    from . import families, get_class

    rows: list[dict[str, Any]] = []
    for fam in families():
        try:
            cls = get_class(fam)
        except ConfigError as e:
            rows.append({"id": fam, "kind": "?", "stems": "", "status": f"broken: {e}", "here": f"broken: {e}",
                         "live": "—", "ready": False, "help": ""})
            continue
        for variant in cls.variants or (None,):
            pid = f"{fam}:{variant}" if variant else fam
            try:
                prov = cls(variant)
                status = prov.status()
                stems = ",".join(prov.stems)
                est = prov.estimate_cost(60.0)
                pid = prov.id
            except StemlabError as e:
                rows.append({"id": pid, "kind": cls.kind, "stems": "", "status": f"unavailable: {e}",
                             "here": f"unavailable: {e}", "live": "—", "ready": False, "help": ""})
                continue
            remote = cls.kind == "remote"
            here = ("sandbox (in-package emulator)" if remote else
                    "ready" if status.ready else f"unavailable: {status.detail}")
            rows.append({
                "id": pid, "kind": cls.kind, "stems": stems,
                "status": "ready" if status.ready else f"unavailable: {status.detail}",
                "here": here, "live": _live(fam) if remote else "—",
                "ready": remote or status.ready,
                "cost_per_min": _cost_text(fam, cls.kind, est), "needs_references": cls.needs_references,
                "bound": prov.bound_kind() or "", "help": status.help,
            })
    return rows


def _say(text: str) -> None:
    """A note under a table: wrapped to the terminal's width on a terminal,
    one line per paragraph off one."""
    import shutil
    import sys
    import textwrap

    out = sys.stdout
    if getattr(out, "isatty", lambda: False)():
        width = shutil.get_terminal_size((100, 24)).columns
        text = "\n".join(textwrap.fill(p, width) if p else "" for p in text.split("\n"))
    print(text, file=out)


def _list(args: argparse.Namespace) -> int:
    rows = catalog()
    if args.kind:
        rows = [r for r in rows if r["kind"] == args.kind]
    if args.family:
        rows = [r for r in rows if r["id"].split(":")[0] == args.family]
    if args.ready:
        rows = [r for r in rows if r.get("ready", str(r.get("status", "")) == "ready")]
    if args.live:
        rows = [r for r in rows if r.get("live") == "key present"]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from ..cli import print_table

    print_table([(r["id"], r["kind"], r["stems"].replace(",", ", "), r.get("cost_per_min", ""), r.get("live", ""),
                  r.get("here", r.get("status", ""))) for r in rows],
                ("provider", "kind", "stems", "cost", "runs live", "runs here"))
    local = [r for r in rows if r["kind"] == "local"]
    remote = [r for r in rows if r["kind"] == "remote"]
    n_live = sum(1 for r in remote if r.get("live") == "key present")
    parts = []
    if local:
        parts.append(f"{len(local)} local ({sum(1 for r in local if r.get('ready'))} ready here)")
    if remote:
        parts.append(f"{len(remote)} remote (every one runs here against its sandbox; {n_live} live: API key set)")
    _say(f"\n{len(rows)} provider(s): " + ", ".join(parts) + "." if rows else "no provider matches the filters")
    if any(r.get("help") for r in rows):
        _say("Not ready here: `stemlab providers info ID` prints where it looked and how to fix it.")
    return 0


def _published(pid: str) -> list[dict[str, Any]]:
    """Published scores of a local model (stemlab.providers.local.zoo), [] if none."""
    try:
        from .local.zoo import published_for

        return [p.as_dict() for p in published_for(pid)]
    except Exception:  # the catalog is an extra: never break `providers info`
        return []


def _info_fields(prov: Provider) -> tuple[dict[str, Any], Status]:
    """``providers info``'s fields for ``prov`` (its class's description and
    this instance's settings, status, cost, provenance) and its status."""
    info = type(prov).describe()
    info["id"] = prov.id
    info["params_used"] = prov.config
    info["stems"] = list(prov.stems)
    st = prov.status()
    info["status"] = "ready" if st.ready else f"unavailable: {st.detail}"
    if st.help:
        info["status_help"] = st.help
    if prov.kind == "remote":
        info["runs_here"] = "sandbox (in-package emulator; every run uses it unless --live)"
        info["runs_live"] = _live(prov.family)
    info["bound"] = prov.bound_kind()
    info["provenance"] = prov.provenance()
    info["estimate_per_minute"] = prov.estimate_cost(60.0).as_dict()
    info["published"] = _published(prov.id)
    return info, st


def _print_price(prov: Provider) -> None:
    """A remote service's price line (its basis, or why it is unknown); nothing for a local model."""
    if prov.kind == "remote":
        from ..services._pricing import pricing_of

        sp = pricing_of(prov.family)
        if sp is not None:
            q = sp.quote()
            print(f"  price:   {q.basis if q.usd_per_unit is not None else q.reason}")


def _print_published(published: list[dict[str, Any]]) -> None:
    """The model's published scores, one line each (nothing when there are none)."""
    if published:
        print("  published scores (from the model's authors / leaderboards; not measured here):")
        for p in published:
            print(f"    {p['target']}: {p['value']:.2f} dB  {p['metric']} ({p['aggregation']}), {p['dataset']}"
                  f"{', ' + str(p['n_tracks']) + ' tracks' if p.get('n_tracks') else ''} — {p['source']}")


def _print_params(params: list[dict[str, Any]]) -> None:
    """The table of the provider's parameters (nothing when it has none)."""
    if params:
        from ..cli import print_table

        print("parameters:")
        print_table([(p["name"], p["type"], repr(p["default"]), p["unit"] or "", p["help"]) for p in params],
                    ("name", "type", "default", "unit", "meaning"))


def _info(args: argparse.Namespace) -> int:
    from . import create

    prov = create(args.id)
    info, st = _info_fields(prov)
    doc = (type(prov).__doc__ or "").strip()
    if args.json:
        info["doc"] = doc
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{info['id']}  ({info['kind']}{', ' + info['bound'] + ' bound' if info['bound'] else ''})")
    if doc:
        print("  " + doc.replace("\n", "\n  "))
    print(f"  stems:   {', '.join(info['stems'])}")
    print(f"  status:  {info['status']}")
    if st.help:
        print("  " + st.help.replace("\n", "\n  "))
    if prov.kind == "remote":
        print(f"  runs here: {info['runs_here']}")
        print(f"  runs live: {info['runs_live']}")
    if info["variants"]:
        print(f"  variants: {', '.join(info['variants'])} (default {info['default_variant']})")
    if info["options"]:
        print(f"  options: {', '.join(info['options'])}")
    e = info["estimate_per_minute"]
    print(f"  cost of 1 min: {_cost_text(prov.family, prov.kind, prov.estimate_cost(60.0))}"
          + (f" ({e['credits']:g} {e['credit_unit']})" if e["credit_unit"] else ""))
    _print_price(prov)
    _print_published(info["published"])
    _print_params(info["params"])
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("providers", help="list providers and their status")
    ps = p.add_subparsers(dest="providers_cmd", required=True, metavar="COMMAND")
    pl = ps.add_parser("list", help="every provider: stems, cost of one minute, whether it runs here "
                                    "(weights / sandbox) and live (API key)")
    pl.add_argument("--kind", choices=("local", "remote"), help="only local models or only remote services")
    pl.add_argument("--family", help="only this family (e.g. mvsep, demucs)")
    pl.add_argument("--ready", action="store_true", help="only providers that run here now (local with weights; "
                                                        "remote services against their sandbox)")
    pl.add_argument("--live", action="store_true", help="only remote services whose API key is set")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=_list)
    pi = ps.add_parser(
        "info", help="parameters, stems, status (with how to fix it), price and provenance of one provider"
    )
    pi.add_argument("id", help='provider spec, e.g. "demucs:htdemucs?shifts=2"')
    pi.add_argument("--json", action="store_true")
    pi.set_defaults(func=_info)
