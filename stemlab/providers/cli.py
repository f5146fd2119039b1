"""``stemlab providers list`` / ``stemlab providers info ID``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ConfigError, StemlabError

__all__ = ["register_cli", "catalog"]


def catalog() -> list[dict[str, Any]]:
    """One row per provider family × variant: stems, kind, status."""
    from . import families, get_class

    rows: list[dict[str, Any]] = []
    for fam in families():
        try:
            cls = get_class(fam)
        except ConfigError as e:
            rows.append({"id": fam, "kind": "?", "stems": "", "status": f"broken: {e}"})
            continue
        for variant in cls.variants or (None,):
            try:
                prov = cls(variant)
                status = prov.status()
                stems = ",".join(prov.stems)
                est = prov.estimate_cost(60.0)
                pid = prov.id
            except StemlabError as e:
                rows.append({"id": f"{fam}:{variant}" if variant else fam, "kind": cls.kind, "stems": "",
                             "status": f"unavailable: {e}"})
                continue
            cost = ""
            if est.usd:
                cost = f"${est.usd:.3f}/min"
            elif est.credits:
                cost = f"{est.credits:g} {est.credit_unit}/min"
            elif est.compute_seconds:
                cost = f"~{est.compute_seconds:.3g} s compute/min"
            rows.append({
                "id": pid, "kind": cls.kind, "stems": stems,
                "status": "ready" if status.ready else f"unavailable: {status.detail}",
                "cost_per_min": cost, "needs_references": cls.needs_references,
            })
    return rows


def _list(args: argparse.Namespace) -> int:
    rows = catalog()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from ..cli import print_table

    print_table([(r["id"], r["kind"], r["stems"].replace(",", ", "), r.get("cost_per_min", ""), r["status"]) for r in rows],
                ("provider", "kind", "stems", "cost", "status"))
    return 0


def _published(pid: str) -> list[dict[str, Any]]:
    """Published scores of a local model (stemlab.providers.local.zoo), [] if none."""
    try:
        from .local.zoo import published_for

        return [p.as_dict() for p in published_for(pid)]
    except Exception:  # the catalog is an extra: never break `providers info`
        return []


def _info(args: argparse.Namespace) -> int:
    from . import create

    prov = create(args.id)
    info = type(prov).describe()
    info["id"] = prov.id
    info["params_used"] = prov.config
    info["stems"] = list(prov.stems)
    st = prov.status()
    info["status"] = "ready" if st.ready else f"unavailable: {st.detail}"
    info["provenance"] = prov.provenance()
    info["estimate_per_minute"] = prov.estimate_cost(60.0).as_dict()
    info["published"] = _published(prov.id)
    doc = (type(prov).__doc__ or "").strip()
    if args.json:
        info["doc"] = doc
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{info['id']}  ({info['kind']})")
    if doc:
        print("  " + doc.replace("\n", "\n  "))
    print(f"  stems:   {', '.join(info['stems'])}")
    print(f"  status:  {info['status']}")
    if info["variants"]:
        print(f"  variants: {', '.join(info['variants'])} (default {info['default_variant']})")
    if info["options"]:
        print(f"  options: {', '.join(info['options'])}")
    e = info["estimate_per_minute"]
    print(f"  cost of 1 min: ${e['usd']:.4f}, {e['credits']:g} {e['credit_unit']}".rstrip()
          + (f", ~{e['compute_seconds']:.3g} s compute" if e["compute_seconds"] else ""))
    if info["published"]:
        print("  published scores (from the model's authors / leaderboards; not measured here):")
        for p in info["published"]:
            print(f"    {p['target']}: {p['value']:.2f} dB  {p['metric']} ({p['aggregation']}), {p['dataset']}"
                  f"{', ' + str(p['n_tracks']) + ' tracks' if p.get('n_tracks') else ''} — {p['source']}")
    if info["params"]:
        from ..cli import print_table

        print("parameters:")
        print_table([(p["name"], p["type"], repr(p["default"]), p["unit"] or "", p["help"]) for p in info["params"]],
                    ("name", "type", "default", "unit", "meaning"))
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("providers", help="list providers and their status")
    ps = p.add_subparsers(dest="providers_cmd", required=True, metavar="COMMAND")
    pl = ps.add_parser("list", help="every provider with stems and status (ready / weights missing / key missing)")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=_list)
    pi = ps.add_parser("info", help="parameters, stems, status and provenance of one provider")
    pi.add_argument("id", help='provider spec, e.g. "demucs:htdemucs?shifts=2"')
    pi.add_argument("--json", action="store_true")
    pi.set_defaults(func=_info)
