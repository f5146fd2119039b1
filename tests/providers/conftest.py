"""Factories for provider tests.

* a tiny demucs local repo built with demucs' real classes (HTDemucs,
  HDemucs, Demucs) and saved exactly as demucs saves models
  (``serialize_model``'s package, ``save_with_checksum`` → ``{sig}-{sha256[:8]}.th``)
  plus bag yamls, so the provider goes through demucs' real loader;
* short excerpts of the demo set (``Track.from_arrays``) for fast tests;
* per-family factories of a ready provider for the contract suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from stemlab.types import Track

FOUR = ["drums", "bass", "other", "vocals"]

#: tiny model name → (signatures, bag weights or None); signatures map to models below
TINY_BAGS: dict[str, tuple[list[str], list[list[float]] | None]] = {
    "tinyht": (["7e5a0001"], None),
    "tinyht2": (["7e5a0002"], None),
    "tinybag": (["7e5a0001", "7e5a0002"], None),
    "tinybagw": (["7e5a0001", "7e5a0002"], [[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0]]),
    "tinyhd": (["4d5a0003"], None),
}
#: a signature addressed directly (no yaml): demucs' v2 Demucs, two sources
TINY_SINGLE_SIG = "2d5a0004"
TINY_SINGLE_SOURCES = ["vocals", "other"]


def make_tiny_models() -> dict[str, Any]:
    """sig → freshly initialised tiny demucs model (seeded)."""
    import torch
    from demucs.demucs import Demucs
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs

    def ht(seed: int) -> Any:
        torch.manual_seed(seed)
        return HTDemucs(FOUR, channels=2, depth=4, t_layers=1, t_heads=1, t_hidden_scale=1.0, dconv_comp=2,
                        segment=Fraction(1))

    torch.manual_seed(3)
    hd = HDemucs(FOUR, channels=2, depth=6, dconv_depth=0, segment=1)
    torch.manual_seed(4)
    d = Demucs(TINY_SINGLE_SOURCES, channels=2, depth=3, dconv_depth=0, segment=1)
    return {"7e5a0001": ht(1), "7e5a0002": ht(2), "4d5a0003": hd, TINY_SINGLE_SIG: d}


def demucs_package(model: Any) -> dict[str, Any]:
    """What ``demucs.states.serialize_model`` returns (``half=True``); its
    ``training_args`` go through OmegaConf, which is optional here."""
    from demucs.states import get_state

    try:
        from demucs.states import serialize_model
        from omegaconf import OmegaConf

        return serialize_model(model, OmegaConf.create({}), half=True)
    except ImportError:
        args, kwargs = model._init_args_kwargs
        return {"klass": model.__class__, "args": args, "kwargs": kwargs,
                "state": get_state(model, None, half=True), "training_args": {}}


def build_tiny_repo(root: Path, bags: dict[str, tuple[list[str], list[list[float]] | None]] | None = None) -> Path:
    """Write tiny models as ``{sig}-{sha256[:8]}.th`` (demucs' ``save_with_checksum``)
    and bag yamls into ``root``; returns ``root``."""
    import yaml
    from demucs.states import save_with_checksum

    root.mkdir(parents=True, exist_ok=True)
    for sig, model in make_tiny_models().items():
        save_with_checksum(demucs_package(model), root / f"{sig}.th")
    for name, (sigs, weights) in (TINY_BAGS if bags is None else bags).items():
        bag: dict[str, Any] = {"models": sigs}
        if weights is not None:
            bag["weights"] = weights
        (root / f"{name}.yaml").write_text(yaml.safe_dump(bag))
    return root


def _json_args(value: Any) -> Any:
    """Encode init arguments as demucs.hf._decode_json reads them (fractions)."""
    if isinstance(value, Fraction):
        return {"_type": "fraction", "numerator": value.numerator, "denominator": value.denominator}
    if isinstance(value, dict):
        return {k: _json_args(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_args(v) for v in value]
    return value


def write_hf_snapshot(cache: Path, name: str, models: dict[str, Any], repo_name: str,
                      revision: str = "0123456789abcdef") -> Path:
    """Write ``name`` as demucs 4.1's Hugging Face cache holds it:
    ``models--adefossez--{repo_name}/snapshots/{rev}/{name}.yaml`` and one
    ``{sig}.safetensors`` per model (class and init args in the metadata, as
    ``demucs.hf.load_safetensors_model`` reads them), plus ``refs/main``."""
    import json

    import yaml
    from safetensors.torch import save_file

    base = cache / f"models--adefossez--{repo_name}"
    snap = base / "snapshots" / revision
    snap.mkdir(parents=True, exist_ok=True)
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / "main").write_text(revision)
    for sig, model in models.items():
        args, kwargs = model._init_args_kwargs
        meta = {"klass": f"{type(model).__module__}.{type(model).__name__}",
                "args": json.dumps(_json_args(list(args))), "kwargs": json.dumps(_json_args(kwargs))}
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(snap / f"{sig}.safetensors"), metadata=meta)
    (snap / f"{name}.yaml").write_text(yaml.safe_dump({"models": list(models)}))
    return snap


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demucs local repo of tiny models (read-only for tests: copy it to modify)."""
    pytest.importorskip("demucs")
    return build_tiny_repo(tmp_path_factory.mktemp("demucs-repo"))


def excerpt(track: Track, seconds: float, start: float = 0.0) -> Track:
    """A ``seconds`` excerpt of a dataset track (mixture and references) in memory."""
    a = int(start * track.sample_rate)
    b = a + int(seconds * track.sample_rate)
    refs = {k: v[:, a:b] for k, v in track.references.items()} if track.references is not None else None
    return Track.from_arrays(f"{track.name}[{start:g}-{start + seconds:g}s]", track.mixture[:, a:b],
                             track.sample_rate, refs)


@pytest.fixture(scope="session")
def demo_tracks():
    """The first two demo songs (generated once per session)."""
    import stemlab.datasets as D

    return list(D.load("demo", tracks=2, seconds=4.0))


@pytest.fixture(scope="session")
def short_track(demo_tracks) -> Track:
    """A 2.5 s demo excerpt with references (vocals enter after the first bar)."""
    return excerpt(demo_tracks[0], 2.5, start=1.0)


# ----------------------------------------------------------------- contract factories

@dataclass
class Made:
    """A provider ready for the contract suite and how to compare its output."""

    provider: Any
    remote: bool = False
    cleanup: Callable[[], None] | None = None
    prepare_track: Callable[[Track], Track] | None = None  # e.g. register a Suno clip


ProviderFactory = Callable[[Path, Any], Made]


def _local(spec: str) -> Callable[[Path, Any], Made]:
    def make(repo: Path, track: Track) -> Made:
        import stemlab.providers as P

        return Made(P.create(spec.format(repo=repo), threads=1) if spec.startswith("demucs") else P.create(spec))

    return make


def _tiny_family(family: str) -> Callable[[Path, Any], Made]:
    """A tiny random model of the msst / uvr family in a temporary folder, in its
    real on-disk format (tests/providers/_tiny_models.py)."""

    def make(repo: Path, track: Track) -> Made:
        import shutil
        import tempfile

        import stemlab.providers as P

        from ._tiny_models import write_mdx_onnx, write_msst

        root = Path(tempfile.mkdtemp(prefix=f"stemlab-{family}-"))
        if family == "msst":
            cfg, ckpt = write_msst(root, "mdx23c")
            prov = P.create(f"msst:mdx23c?config={cfg}&ckpt={ckpt}", threads=1)
        else:
            write_mdx_onnx(root)
            prov = P.create(f"uvr:tiny_mdx.onnx?model_dir={root}", threads=1)
        return Made(prov, cleanup=lambda: shutil.rmtree(root, ignore_errors=True))

    return make


def _sandboxed(family: str, spec: str | None = None) -> Callable[[Path, Any], Made]:
    """Start the family's sandbox through the harness' pool, as the runner does."""

    def make(repo: Path, track: Track) -> Made:
        import stemlab.providers as P
        from stemlab.sandbox import SandboxPool

        pool = SandboxPool()  # the runner's default clock scale
        pool.register(track)
        prov = P.create(spec or family, **pool.options_for(family))
        return Made(prov, remote=True, cleanup=pool.close)

    return make


#: contract cases: family → [(case id, factory)]. Families with a sandbox in
#: ``stemlab.sandbox.SANDBOXES`` but no entry here get a generic sandboxed case.
LOCAL_CASES: dict[str, list[tuple[str, Callable[[Path, Any], Made]]]] = {
    "demucs": [
        ("demucs:tinyht", _local("demucs:tinyht?repo={repo}&shifts=1")),
        ("demucs:tinybag", _local("demucs:tinybag?repo={repo}&shifts=0")),
    ],
    "oracle": [(f"oracle:{v}", _local(f"oracle:{v}")) for v in ("irm", "ibm", "mwf")],
    "baseline": [(f"baseline:{v}", _local(f"baseline:{v}")) for v in ("mixture", "silence", "hpss", "centre")],
    "spleeter": [("spleeter:2stems", _local("spleeter:2stems?segment=1.5"))],
    "msst": [("msst:mdx23c[tiny]", _tiny_family("msst"))],
    "uvr": [("uvr:mdx-net[tiny]", _tiny_family("uvr"))],
}


def contract_cases() -> list[Any]:
    """One pytest param per case, for every registered family; a family with
    neither a local case nor a sandbox is a visible skip."""
    import stemlab.providers as P
    from stemlab.sandbox import SANDBOXES

    params = []
    for fam in P.families():
        if fam in LOCAL_CASES:
            for cid, make in LOCAL_CASES[fam]:
                params.append(pytest.param(fam, make, id=cid))
        elif fam in SANDBOXES:
            params.append(pytest.param(fam, _sandboxed(fam), id=f"{fam}[sandbox]"))
        else:
            params.append(pytest.param(fam, None, id=f"{fam}[no-factory]", marks=pytest.mark.skip(
                reason=f"provider family {fam!r} has no contract factory: no local case in "
                       "tests/providers/conftest.py and no sandbox in stemlab.sandbox.SANDBOXES")))
    return params


def finite_noise(channels: int, n: int, seed: int = 0) -> np.ndarray:
    return (np.random.RandomState(seed).randn(channels, n) * 0.1).astype(np.float32)
