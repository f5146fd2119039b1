"""Every remote service has one home, and its emulator is independent of its client.

* the :data:`stemlab.services.SERVICES` registry is the only list: every
  entry has its folder (``provider.py``, ``pricing.py``, ``sandbox.py``) and
  shows up in ``providers.BUILTIN``, ``sandbox.SANDBOXES``,
  ``_secrets.ENV_VARS`` and ``reports.pricing.PRICING``; every service folder
  has an entry;
* no ``services/*/sandbox.py`` reaches a client or pricing module — checked
  statically (every ``import`` in the transitive closure of stemlab modules,
  lazy ones included) and by importing it in a fresh interpreter;
* the client's cost (estimate and final) reconciles with the sandbox's own
  ledger for every service — and a deliberately wrong client formula (+1
  MVSEP credit) is caught by that reconciliation, which was impossible while
  the MVSEP sandbox charged with the client's ``credits_for``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import stemlab
import stemlab.providers as P
from stemlab._secrets import ENV_VARS
from stemlab.reports.pricing import PRICING
from stemlab.sandbox import SANDBOXES, SandboxPool
from stemlab.services import SERVICES, load, pricing_module
from stemlab.types import Track

ROOT = Path(stemlab.__file__).resolve().parent
SERVICES_DIR = ROOT / "services"
#: shared machinery, not services
SHARED = {"_remote", "_sandbox"}
#: what an emulator may import from stemlab (besides itself): the sandbox
#: framework, core types/errors/audio, the registry package, and the generic
#: loopback server the framework runs on (it knows no service)
ALLOWED = ("stemlab.services._sandbox", "stemlab.audio", "stemlab.errors", "stemlab.types", "stemlab._version",
           "stemlab._secrets", "stemlab.services._remote.serve")
#: packages whose import means "knows nothing", so ``stemlab`` / ``stemlab.services`` themselves pass
ALLOWED_PACKAGES = ("stemlab", "stemlab.services", "stemlab.services._remote")


def _service_dirs() -> list[str]:
    return sorted(p.name for p in SERVICES_DIR.iterdir()
                  if p.is_dir() and p.name not in SHARED and not p.name.startswith("__"))


# --------------------------------------------------------------------- registry
def test_registry_is_the_only_list_of_services() -> None:
    assert _service_dirs() == sorted(SERVICES), "a folder under stemlab/services without a SERVICES entry (or back)"
    for name, info in SERVICES.items():
        folder = SERVICES_DIR / name
        for f in ("__init__.py", "provider.py", "pricing.py", "sandbox.py"):
            assert (folder / f).is_file(), f"{name}: missing {f}"
        assert info.provider.startswith(f"stemlab.services.{name}.provider:")
        assert info.sandbox.startswith(f"stemlab.services.{name}.sandbox:")
        assert info.pricing == f"stemlab.services.{name}.pricing"
        cls = load(info.provider)
        assert cls.family == name and cls.description == info.description
        assert P.BUILTIN[name] == info.provider and P.get_class(name) is cls
        assert SANDBOXES[name] == info.sandbox and load(info.sandbox).service == name
        assert ENV_VARS[name] == info.env_var
        if info.webhook_env_var:
            assert ENV_VARS[f"{name}_webhook"] == info.webhook_env_var
        sp = pricing_module(name).SERVICE_PRICING
        assert sp.service == name and PRICING[name] is sp
    assert set(ENV_VARS) == set(SERVICES) | {f"{n}_webhook" for n, s in SERVICES.items() if s.webhook_env_var}


def test_sandbox_facade_resolves_every_emulator_by_class_name() -> None:
    import stemlab.sandbox as SB

    for name, info in SERVICES.items():
        cls_name = info.sandbox.rpartition(":")[2]
        assert getattr(SB, cls_name) is load(info.sandbox) is SB.get_sandbox_class(name)
        assert cls_name in SB.__all__
    with pytest.raises(AttributeError):
        SB.NoSuchSandbox  # noqa: B018


# ------------------------------------------------------------ import independence
def _module_file(mod: str) -> Path | None:
    parts = mod.split(".")[1:]
    if not parts:
        return ROOT / "__init__.py"
    rel = Path(*parts)
    for cand in (ROOT / rel.with_suffix(".py"), ROOT / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path, mod: str) -> set[str]:
    """Every stemlab module an ``import`` in ``path`` names (relative ones
    resolved; ``from x import y`` counts ``x.y`` when that is a module)."""
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            for a in node.names:
                if _module_file(f"{target}.{a.name}") is not None:
                    out.add(f"{target}.{a.name}")
    return {m for m in out if m == "stemlab" or m.startswith("stemlab.")}


def _closure(mod: str) -> set[str]:
    seen: set[str] = set()
    todo = [mod]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        f = _module_file(m)
        if f is None:
            continue
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]  # parent packages run first
        todo += sorted(_imports(f, m))
    return seen


def _forbidden(mods: set[str], own: str) -> list[str]:
    return sorted(m for m in mods if m != own and m not in ALLOWED_PACKAGES
                  and m != f"stemlab.services.{own.split('.')[2]}"
                  and not any(m == a or m.startswith(a + ".") for a in ALLOWED))


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_sandbox_import_graph_has_no_client_or_pricing(name: str) -> None:
    own = f"stemlab.services.{name}.sandbox"
    graph = _closure(own)
    assert own in graph and "stemlab.services._sandbox.server" in graph  # the walk really ran
    assert _forbidden(graph, own) == [], f"{own} reaches client/pricing code"


def test_import_scan_catches_a_sandbox_that_imports_its_client(tmp_path: Path) -> None:
    """The scan itself: the pre-refactor MVSEP emulator's import is reported."""
    bad = tmp_path / "sandbox.py"
    bad.write_text("from .provider import credits_for\nfrom .._sandbox.server import Sandbox\n"
                   "def f():\n    from ..mvsep import pricing\n")
    found = _imports(bad, "stemlab.services.mvsep.sandbox")
    assert _forbidden(found, "stemlab.services.mvsep.sandbox") == ["stemlab.services.mvsep.pricing",
                                                                   "stemlab.services.mvsep.provider"]


def test_sandboxes_import_no_client_module_at_run_time() -> None:
    code = ("import json, sys\n"
            f"names = {sorted(SERVICES)!r}\n"
            "out = {}\n"
            "for n in names:\n"
            "    __import__(f'stemlab.services.{n}.sandbox')\n"
            "out = sorted(m for m in sys.modules if m.startswith('stemlab'))\n"
            "print(json.dumps(out))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(ROOT.parent))
    assert res.returncode == 0, res.stderr
    loaded = set(json.loads(res.stdout.strip().splitlines()[-1]))
    clients = {f"stemlab.services.{n}.{part}" for n in SERVICES
               for part in ("provider", "api", "pricing", "catalog", "quality_checker")}
    assert loaded & clients == set()
    assert {m for m in loaded if m.startswith("stemlab.services._remote.")} <= {"stemlab.services._remote.serve"}
    assert not any(m.startswith(("stemlab.providers", "stemlab.reports")) for m in loaded)


# ------------------------------------------------------------------ reconciliation
def _track(seconds: float = 65.0, sr: int = 8000) -> Track:
    """Long enough that every formula's rounding matters (65 s: MVSEP's
    ensemble ×4 → 4 credits, Dango's paid tier, 65 AI Stem Splitter seconds)."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * sr)) / sr
    stems = {
        "vocals": 0.2 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)),
        "drums": 0.1 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 4 * t) > 0.6),
        "bass": 0.2 * np.sin(2 * np.pi * 55 * t),
        "other": 0.05 * rng.standard_normal(t.size),
    }
    return Track.from_arrays("reconcile", None, sr, {k: np.stack([v, 0.8 * v]).astype(np.float32)
                                                      for k, v in stems.items()})


#: optional per-service choices (a new service needs none: it runs its default variant)
SPECS = {"mvsep": "mvsep:ensemble"}  # price_coefficient 4.0 in the snapshot: the formula's factor matters
#: services whose estimate is the exact charge; the others' must not under-estimate it (Dango: seed 003
#: gives 60–120 paid points for a song ≥ 30 s, the estimate is the upper bound)
EXACT_ESTIMATE = {"aistemsplitter", "mvsep", "suno"}


def _reconcile(name: str, track: Track, spec: str | None = None) -> tuple[float, float, float]:
    """(client estimate, client final cost, sandbox ledger charge) in the
    service's credits (every charge the sandbox kept, whatever its pool)."""
    with SandboxPool() as pool:
        pool.register(track)
        prov = P.create(spec or SPECS.get(name, name), **pool.options_for(name))
        try:
            sep = prov.separate(track)
            est = prov.estimate_cost(track)
        finally:
            prov.close()
        charged = sum(c.amount for c in pool.get(name).ledger.charges if not c.refunded)
    assert sep.cost is not None  # Suno's stays an estimate: the gateway reports no charge
    return float(est.credits or 0.0), float(sep.cost.credits or 0.0), float(charged)


def _check(name: str, est: float, final: float, charged: float) -> None:
    assert charged > 0, f"{name}: the sandbox charged nothing"
    assert final == charged, f"{name}: client's cost {final} ≠ sandbox ledger {charged}"
    if name in EXACT_ESTIMATE:
        assert est == charged, f"{name}: client's estimate {est} ≠ sandbox ledger {charged}"
    else:
        assert est >= charged, f"{name}: client's estimate {est} under the sandbox's charge {charged}"


@pytest.fixture(scope="module")
def long_track() -> Track:
    return _track()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_client_cost_reconciles_with_the_sandbox_ledger(name: str, long_track: Track) -> None:
    _check(name, *_reconcile(name, long_track))


def test_a_wrong_client_formula_fails_the_reconciliation(monkeypatch: pytest.MonkeyPatch, long_track: Track) -> None:
    """+1 credit in the client's MVSEP formula: the sandbox (which has its own
    reading of seed 002) still charges the right amount, so the two disagree."""
    from stemlab.services.mvsep import pricing

    right = pricing.credits_for
    monkeypatch.setattr(pricing, "credits_for", lambda seconds, coef=1.0: right(seconds, coef) + 1)
    est, final, charged = _reconcile("mvsep", long_track)
    assert (est, final, charged) == (5.0, 5.0, 4.0)  # floor(65 × 4 / 60) = 4 by the seed; the broken client says 5
    with pytest.raises(AssertionError, match="client's cost 5.0 ≠ sandbox ledger 4.0"):
        _check("mvsep", est, final, charged)
