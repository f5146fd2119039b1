"""``stemlab run`` and ``stemlab results show``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["register_cli", "DEMO_SPEC", "demo_providers", "demo_selection"]

#: The main job of the README: the demo set through every local provider that
#: needs no download and every remote service against its sandbox.
DEMO_SPEC: dict[str, Any] = {
    "name": "stemlab demo comparison (local providers + sandboxed services)",
    "datasets": ["demo"],
    "providers": [],  # filled by demo_providers()
    "metrics": ["bsseval_v4", "usdr", "si_sdr"],
    "output": "stemlab-results",
    "sandbox": True,
}


def demo_selection() -> tuple[list[Any], list[dict[str, str]]]:
    """(providers, skipped) of the main job: every built-in provider that can
    run here without weights or keys (oracles, baselines, ready demucs
    models) plus every remote service in sandbox mode; ``skipped``: the
    local providers left out, each with ``id``, ``reason`` (one line) and
    ``help`` (the provider's whole message: e.g. where demucs looked for
    its weights and how to fetch them). Built-in families only: a provider
    registered at run time or by another package may need weights, keys or
    a service of its own."""
    from ..providers import BUILTIN, get_class

    out: list[Any] = []
    skipped: list[dict[str, str]] = []
    for fam in sorted(BUILTIN):
        cls = get_class(fam)
        if cls.kind == "remote":
            out.append({"provider": fam, "sandbox": True})
            continue
        for v in cls.variants or (None,):
            prov = cls(v)
            if not getattr(cls, "in_demo", True):
                skipped.append({"id": prov.id, "reason": "not part of the demo (in_demo = False)", "help": ""})
                continue
            st = prov.status()
            if st.ready:
                out.append(prov.id)
            else:
                skipped.append({"id": prov.id, "reason": st.detail, "help": st.help})
    return out, skipped


def demo_providers() -> list[Any]:
    """The providers of :func:`demo_selection` (what the main job runs)."""
    return demo_selection()[0]


def _print_skipped(skipped: list[dict[str, str]]) -> None:
    """What ``--demo`` left out and why, on stderr."""
    if not skipped:
        return
    print(f"--demo: {len(skipped)} local provider(s) cannot run here and are skipped:", file=sys.stderr)
    for r in skipped:
        print(f"  {r['id']}: {r['reason']}", file=sys.stderr)
    first = next((r for r in skipped if r["help"]), None)
    if first is not None:
        print("How to make them run (the same steps for each; `stemlab providers info ID` prints its own):\n  "
              + first["help"].replace("\n", "\n  "), file=sys.stderr)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields that command-line options override (output, budget, metrics, sandbox, executor)."""
    overrides: dict[str, Any] = {}
    if args.output:
        overrides["output"] = args.output
    if args.budget is not None:
        overrides["budget"] = {"usd": args.budget}
    if args.metrics:
        overrides["metrics"] = [m for m in args.metrics.split(",") if m]
    if args.live:
        overrides["sandbox"] = False
    if args.executor:
        overrides["executor"] = args.executor
    if args.address:
        overrides["executor_options"] = {"address": args.address}
    return overrides


def _demo_raw(args: argparse.Namespace) -> dict[str, Any]:
    """The demo spec (:data:`DEMO_SPEC`) with the providers and datasets given
    on the command line; without ``--provider`` the demo selection, whose
    skipped providers are printed unless ``--quiet``."""
    raw = dict(DEMO_SPEC)
    if args.provider:
        raw["providers"] = list(args.provider)
    else:
        raw["providers"], skipped = demo_selection()
        if not args.quiet:
            _print_skipped(skipped)
    if args.dataset:
        raw["datasets"] = [_dataset_arg(d, args) for d in args.dataset]
    return raw


def _spec_from_args(args: argparse.Namespace) -> Any:
    from .spec import load_spec

    overrides = _overrides(args)
    if args.spec:
        if args.dataset or args.provider:
            print("stemlab run: give a SPEC file or --dataset/--provider, not both", file=sys.stderr)
            raise SystemExit(2)
        return load_spec(args.spec, **overrides)
    if args.demo or (not args.dataset and not args.provider):
        return load_spec(_demo_raw(args), **overrides)
    if not args.dataset or not args.provider:
        print("stemlab run: need --dataset and at least one --provider (or a SPEC file, or --demo)", file=sys.stderr)
        raise SystemExit(2)
    raw = {"datasets": [_dataset_arg(d, args) for d in args.dataset], "providers": list(args.provider)}
    return load_spec(raw, **overrides)


def _dataset_arg(name: str, args: argparse.Namespace) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name}
    if args.root:
        d["root"] = args.root
    if args.split:
        d["split"] = args.split
    if args.tracks:
        d["pattern"] = args.tracks
    if args.limit is not None:  # --limit 0 is an error (expected int ≥ 1), not "no limit"
        d["limit"] = args.limit
    return d


def _print_plan(res: Any) -> None:
    from ..cli import print_table

    rows, meta = res.plan, res.meta
    unpriced = set(meta.get("unpriced") or [])

    def usd(r: dict[str, Any]) -> str:
        if r["provider"] in unpriced:
            return "unknown"
        return f"{r['usd']}" + (" + unknown" if r["provider"] == "TOTAL" and unpriced else "")

    print_table([(r["provider"], r["jobs"], r["cached"], r["audio_min"], usd(r),
                  f"{r['credits']} {r['credit_unit']}".strip(), r["compute_s"], r.get("refused", 0)) for r in rows],
                ("provider", "jobs to run", "cached", "audio min", "est. USD", "est. credits", "est. compute s",
                 "would be refused"))
    cap = meta.get("budget_usd")
    refused = meta.get("refused") or []
    total = next((r for r in rows if r["provider"] == "TOTAL"), None)
    if cap is not None and total is not None:
        print(f"\nbudget: ${cap:.4f}; estimated ${total['usd']:.4f}"
              + (" (+ jobs of unknown USD price)" if unpriced else "")
              + (f" — {len(refused)} job(s) would be refused:" if refused else " — within the budget"))
    elif refused:
        print(f"\n{len(refused)} job(s) would be refused by per-provider budgets:")
    for r in refused:
        print(f"  {r['provider']} on {r['track']}: {r['reason']}")
    if unpriced:
        print(
            "\nUSD price unknown (counted against credit caps only, not the USD budget): "
            + ", ".join(sorted(unpriced))
            + ". Set providers[i].price (e.g. price: {usd_per_credit: 0.01}) or providers[i].budget.credits."
        )
    print("\ndry run: nothing was written (no output folder, ledger or owner file).")


def _run(args: argparse.Namespace) -> int:
    from .runner import Runner

    spec = _spec_from_args(args)
    runner = Runner(spec, force=args.force or (), retry_failed=args.retry_failed,
                    retry_in_doubt=args.retry_in_doubt, strict=args.strict,
                    quiet=args.quiet, overwrite=args.overwrite, progress_every=args.progress_every)
    if args.dry_run:
        res = runner.run(dry_run=True)
        print(f"dry run: {spec.name} → {runner.output}")
        _print_plan(res)
        return 1 if args.strict and res.meta.get("refused") else 0
    res = runner.run()
    if not args.quiet:
        _summary(res)
    if args.report is not None:
        from ..reports import build_report
        from ..reports.html import default_output

        path = build_report(res.path, Path(args.report) if args.report else default_output(res.run_id))
        if not args.quiet:
            print(f"report: {path}")
    if args.strict and res.failed:
        return 1
    return 0


def _med(g: Any, col: str) -> float:
    return float(g[col].astype(float).median()) if col in g and g[col].notna().any() else float("nan")


def _summary(res: Any) -> None:
    """Per provider: jobs done/failed, USD ('unknown' when the service's
    price is), the service's own units, the median *measured* seconds per
    job and — apart, labelled — the median *simulated* seconds of a sandbox;
    failures; the primary metric's leaderboard (aggregation named)."""
    from ..cli import print_table
    from ..reports.tables import jobs_view

    jobs = jobs_view(res.jobs)
    print(f"results: {res.path}  (run {res.run_id})")
    if len(jobs):
        rows = []
        unknown: dict[str, str] = {}
        for prov, g in jobs.groupby("provider", sort=False):
            usd_v = g["cost_usd"].astype(float)
            notes = [n for n in g["cost_note"] if n]
            if notes:  # a price unknown (or a charge not recorded): never summed as $0
                usd = "unknown"
                unknown[str(prov)] = notes[0]
            else:
                usd = f"{usd_v.fillna(0).sum():.4f}"
            units = g["native_units"].astype(float)
            unit = next((u for u in g["native_unit"] if u), "")
            native = f"{units.fillna(0).sum():.3g} {unit}".strip() if unit else ""
            meas = _med(g[g["clock"] == "measured"], "total_s")
            sim = _med(g[g["clock"] == "simulated"], "sim_total_s")
            rows.append((prov, int((g.status == "done").sum()), int((g.status != "done").sum()), usd, native,
                         "" if math.isnan(meas) else f"{meas:.2f}", "" if math.isnan(sim) else f"{sim:.2f}"))
        print_table(rows, ("provider", "done", "failed", "USD", "native units", "measured s (median)",
                           "SIMULATED s (median)"))
        if (jobs["clock"] == "simulated").any():
            print("SIMULATED s: a sandbox's virtual service seconds on a scaled clock — an emulation, not a "
                  "measurement of the service (its measured wall time is in jobs.parquet total_s).")
        for prov, note in unknown.items():
            print(f"USD unknown for {prov}: {note}")
        bad = jobs[jobs.status != "done"]
        if len(bad):
            print(f"\nfailed jobs{' (first 20)' if len(bad) > 20 else ''}:")
            print_table(
                [(r.provider, r.track, r.status, f"{r.error_kind}: {r.error}") for r in bad.head(20).itertuples()],
                ("provider", "track", "status", "error"),
            )
    s = res.scores
    if len(s):
        from ..metrics.aggregate import aggregate, describe
        from ..reports.tables import primary_metric

        metric = primary_metric(s)
        lb = aggregate(s, metric, by=("provider", "target"))
        label = str(lb["aggregation"].iloc[0])
        wide = lb.pivot(index="provider", columns="target", values="value")
        wide = wide.reindex(list(dict.fromkeys(lb["provider"])))
        wide.columns.name = wide.index.name = None
        n = lb["n_tracks"] + lb["n_nan_tracks"]  # tracks scored, NaN or not
        nan = int(lb["n_nan_tracks"].sum())
        print(f"\n{metric} — aggregation {label}: {describe(label)}"
              f" ({n.min() if n.min() == n.max() else f'{n.min()}-{n.max()}'} track(s) per cell"
              + (f", {nan} NaN track value(s) skipped" if nan else "") + "):")
        have = set(zip(lb["provider"].astype(str), lb["target"].astype(str)))
        print_table([(prov, *(("NaN" if (str(prov), str(t)) in have else "-") if math.isnan(v) else f"{v:.2f}"
                              for t, v in zip(wide.columns, row)))
                     for prov, row in zip(wide.index, wide.to_numpy(dtype=float))], ("", *map(str, wide.columns)))
        if any((str(p), str(t)) not in have for p in wide.index for t in wide.columns):
            print("(- : the provider does not deliver that target; NaN: the metric is undefined for its output)")


def _results_show(args: argparse.Namespace) -> int:
    from .results import load_results

    res = load_results(args.path)
    if args.json:
        print(json.dumps({"meta": res.meta, "jobs": json.loads(res.jobs.to_json(orient="records")),
                          "scores": json.loads(res.scores.to_json(orient="records"))}, indent=1, default=str))
        return 0
    _summary(res)
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="separate and score: tracks × providers (resumable, cached, budgeted)")
    p.add_argument("spec", nargs="?", help="experiment spec (YAML/TOML/JSON); omit for --demo or flags")
    p.add_argument(
        "--demo", action="store_true", help="the bundled demo: demo set, local providers, sandboxed services"
    )
    p.add_argument("--dataset", action="append", help="dataset name (repeatable)")
    p.add_argument("--root", help="dataset root")
    p.add_argument("--split", choices=("train", "valid", "test"))
    p.add_argument("--tracks", help="glob of track names")
    p.add_argument("--limit", type=int, help="at most N tracks per dataset")
    p.add_argument("--provider", action="append", help='provider spec, e.g. "demucs:htdemucs?shifts=1" (repeatable)')
    p.add_argument("--metrics", help="comma-separated metric names")
    p.add_argument("-o", "--output", help="results directory (default from spec: stemlab-results)")
    p.add_argument("--budget", type=float, help="hard cap in USD over all paid jobs")
    p.add_argument("--dry-run", action="store_true",
                   help="print planned jobs, cost estimates and the jobs the budget would refuse; writes nothing")
    p.add_argument("--resume", action="store_true", help="(default behaviour) continue where the ledger stopped")
    p.add_argument("--force", action="append", help="recompute this provider (label or family; repeatable)")
    p.add_argument("--retry-failed", action="store_true", help="also retry failed jobs that may have been paid for")
    p.add_argument("--retry-in-doubt", action="store_true",
                   help="resubmit jobs in doubt (a lost submit answer on a service with no job list): check the "
                        "account first — this may pay again")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of another spec in the output directory (cache and ledger are reused)")
    p.add_argument("--live", action="store_true", help="send remote providers to the real services (default: sandbox)")
    p.add_argument("--strict", action="store_true", help="exit 1 if any job failed")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary (papermill/CI)")
    p.add_argument("--report", nargs="?", const="", default=None, metavar="PATH",
                   help="also write the HTML report (+ PATH's .md and .leaderboard.csv sidecars); without PATH: "
                        "reports/<run-id>/report.html")
    p.add_argument("--progress-every", type=float, metavar="SECONDS",
                   help="off a terminal: seconds between progress log lines (default 15)")
    p.add_argument(
        "--executor", choices=("local", "ray"), help="run local providers in threads (default) or Ray actors"
    )
    p.add_argument("--address", help="Ray cluster to join with --executor ray (auto, ray://host:10001 …)")
    p.set_defaults(func=_run)

    r = sub.add_parser("results", help="inspect a results directory")
    rs = r.add_subparsers(dest="results_cmd", required=True, metavar="COMMAND")
    show = rs.add_parser("show", help="summary, failures and leaderboard")
    show.add_argument("path")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_results_show)
