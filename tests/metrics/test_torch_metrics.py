"""The torch backend (:mod:`stemlab.metrics.torch`) against the numpy path,
on CPU tensors (no GPU needed): float64 parity, the float32 tolerance,
batching, the NaN policy, ``evaluate``'s tensors, and the ``device`` metric
option through evaluate, ``stemlab score``, score_stems and the run spec.

Tolerances (docs/metrics.md, "torch backend"): float64 — SDR/ISR ≤ 0.01 dB
(observed ~1e-13 dB), SIR/SAR compared likewise and reported; float32
frames — SDR ≤ 1e-4 dB, ISR/SIR/SAR ≤ 0.01 dB on the synthetic signals,
and on real music SDR/ISR ≤ 0.01 dB, SIR/SAR within museval's own
sensitivity (0.35 dB).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from stemlab.errors import InputError
from stemlab.metrics import bsseval as NB
from stemlab.metrics import evaluate as np_evaluate
from stemlab.metrics import simple as SM
from stemlab.metrics.torch import bsseval as TB
from stemlab.metrics.torch import evaluate, nanmedian
from stemlab.metrics.torch import simple as TS

SR = 44100
CRITERIA = ("sdr", "isr", "sir", "sar")


def _signals(seed: int = 0, nsrc: int = 3, seconds: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """References (band-limited noise + tones) and estimates with cross-talk,
    noise and a silent estimate frame (nsrc, 2, T), float64."""
    rng = np.random.default_rng(seed)
    T = int(seconds * SR)
    t = np.arange(T) / SR
    refs = np.empty((nsrc, 2, T))
    for j in range(nsrc):
        x = rng.standard_normal((2, T))
        x = np.cumsum(x, axis=1) * 0.01  # red-ish noise
        x -= x.mean(axis=1, keepdims=True)
        refs[j] = 0.1 * x + 0.2 * np.sin(2 * np.pi * 110 * (j + 1) * t)
    ests = 0.85 * refs + 0.1 * np.roll(refs, 1, axis=0) + 0.02 * rng.standard_normal(refs.shape)
    ests[1, :, SR : 2 * SR] = 0.0  # a silent estimate frame: NaN for every source (museval's policy)
    return refs, ests


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert np.array_equal(np.isnan(a), np.isnan(b))
    fin = np.isfinite(a)
    assert fin.any()
    return float(np.abs(a[fin] - b[fin]).max())


# ----------------------------------------------------------- BSSEval parity

@pytest.mark.parametrize("solver", ["levinson", "cholesky", "lu"])
def test_float64_parity_with_numpy_path(solver: str) -> None:
    refs, ests = _signals()
    want = NB.bss_eval_v4(refs, ests)
    got = TB.bss_eval_v4(_t(refs), _t(ests), solver=solver)
    assert got.sdr.dtype == torch.float64 and tuple(got.sdr.shape) == want.sdr.shape == (3, 3)
    assert np.isnan(want.sdr[:, 1]).all() and np.isfinite(want.sdr[:, 0]).all()
    diffs = {k: _max_diff(getattr(want, k), getattr(got, k).numpy()) for k in CRITERIA}
    print(f"float64 {solver}: max |torch − numpy| dB", diffs)
    assert diffs["sdr"] <= 0.01 and diffs["isr"] <= 0.01
    assert diffs["sir"] <= 0.01 and diffs["sar"] <= 0.01  # well-conditioned synthetic signals
    assert max(diffs.values()) < 1e-8  # observed ~1e-13
    assert 10 < float(np.nanmedian(want.sdr)) < 30  # real numbers, not a degenerate case


def test_sdr_only_path_equals_numpy() -> None:
    refs, ests = _signals(1)
    want = NB.sdr_frames(refs, ests)
    got = TB.sdr_frames(_t(refs), _t(ests))
    assert got.isr is None and got.sir is None
    assert _max_diff(want.sdr, got.sdr.numpy()) < 1e-10


def test_float32_tolerance() -> None:
    refs, ests = _signals(2)
    want = NB.bss_eval_v4(refs, ests)
    got = TB.bss_eval_v4(_t(refs).float(), _t(ests).float())
    diffs = {k: _max_diff(getattr(want, k), getattr(got, k).numpy()) for k in CRITERIA}
    print("float32 inputs: max |torch − numpy(float64)| dB", diffs)
    assert diffs["sdr"] <= 1e-4
    assert diffs["isr"] <= 0.01 and diffs["sir"] <= 0.01 and diffs["sar"] <= 0.01
    # float32 frames on float64 inputs (dtype=): the same bound
    got2 = TB.bss_eval_v4(_t(refs), _t(ests), dtype="float32")
    assert _max_diff(want.isr, got2.isr.numpy()) <= 0.01


def test_batch_equals_items_one_by_one() -> None:
    (r0, e0), (r1, e1) = _signals(3), _signals(4)
    e1[:, :, : SR // 2] *= 0.5
    batch = TB.bss_eval_v4(_t(np.stack([r0, r1])), _t(np.stack([e0, e1])))
    for i, (r, e) in enumerate(((r0, e0), (r1, e1))):
        one = TB.bss_eval_v4(_t(r), _t(e))
        for k in CRITERIA:
            a, b = getattr(batch, k)[i].numpy(), getattr(one, k).numpy()
            assert _max_diff(a, b) < 1e-9


@pytest.mark.parametrize("policy", ["museval", "target"])
def test_nan_policy_silent_reference_frames_as_numpy(policy: str) -> None:
    refs, ests = _signals(5)
    refs[2, :, 2 * SR : 3 * SR] = 0.0  # a silent reference frame
    want = NB.bss_eval_v4(refs, ests, nan_policy=policy)
    got = TB.bss_eval_v4(_t(refs), _t(ests), nan_policy=policy)
    assert np.array_equal(want.silent, got.silent.numpy())
    for k in CRITERIA:
        assert np.array_equal(np.isnan(getattr(want, k)), np.isnan(getattr(got, k).numpy()))
    nan_frames = np.isnan(got.sdr.numpy())
    if policy == "museval":
        assert nan_frames[:, 1].all() and nan_frames[:, 2].all() and not nan_frames[:, 0].any()
    else:  # only the silent sources' own frames
        assert nan_frames[1, 1] and nan_frames[2, 2] and not nan_frames[0].any()
    with pytest.raises(InputError):
        TB.bss_eval_v4(_t(refs), _t(ests), nan_policy="none")


# ------------------------------------------------------ on real music

def _musdb(sample: Path, bits: int | None = 16) -> tuple[np.ndarray, np.ndarray]:
    """The sample's stems as references — rounded to 16-bit PCM as musdb/stempeg
    hand them to museval (stemlab's ``reference_bits: auto`` for musdb18), or
    the float AAC decode (``bits=None``) — and estimates with cross-talk and
    noise."""
    from stemlab import audio

    (path,) = sorted((sample / "train").glob("*.stem.mp4"))
    streams, sr = audio.decode_streams(path)
    assert sr == SR
    refs = np.stack([s.astype(np.float64) for s in streams[1:5]])  # drums, bass, other, vocals
    if bits:
        q = float(2 ** (bits - 1))
        refs = np.clip(np.round(refs * q), -q, q - 1) / q
    rng = np.random.default_rng(7)
    ests = 0.8 * refs + 0.15 * np.roll(refs, 1, axis=0) + 1e-3 * rng.standard_normal(refs.shape)
    return refs, ests


def _diffs(want: NB.BssEvalResult, got: TB.TorchBssEval) -> dict[str, float]:
    return {k: _max_diff(getattr(want, k), getattr(got, k).numpy()) for k in CRITERIA}


def test_parity_on_the_musdb_sample(musdb_sample: Path) -> None:
    refs, ests = _musdb(musdb_sample)
    want = NB.bss_eval_v4(refs, ests)
    d64 = _diffs(want, TB.bss_eval_v4(_t(refs), _t(ests)))
    d32 = _diffs(want, TB.bss_eval_v4(_t(refs).float(), _t(ests).float()))
    print("MUSDB sample (16-bit refs), float64: max |torch − numpy| dB", d64)
    print("MUSDB sample (16-bit refs), float32: max |torch − numpy(float64)| dB", d32)
    assert max(d64.values()) <= 1e-4  # observed ≤ 2e-6
    assert d32["sdr"] <= 1e-4 and d32["isr"] <= 0.01 and d32["sir"] <= 0.01 and d32["sar"] <= 0.01
    assert np.isfinite(want.sdr).all() and -5 < float(np.median(want.sdr)) < 40


def test_float_decoded_references_differ_only_within_numpys_own_sensitivity(musdb_sample: Path) -> None:
    """The float AAC decode is band-limited (rank-deficient references, filter
    gain ~1e4): ISR/SIR/SAR are set by rounding on every path — numpy's own
    values move as much under a 1e-7 relative perturbation of the references
    (museval's: 0.35 dB SIR). SDR needs no filters and stays exact."""
    refs, ests = _musdb(musdb_sample, bits=None)
    want = NB.bss_eval_v4(refs, ests)
    assert want.info["filter_gain"] > 1e3
    rng = np.random.default_rng(11)
    moved = NB.bss_eval_v4(refs * (1 + 1e-7 * rng.standard_normal(refs.shape)), ests)
    sens = {k: _max_diff(getattr(want, k), getattr(moved, k)) for k in CRITERIA}
    d64 = _diffs(want, TB.bss_eval_v4(_t(refs), _t(ests)))
    print("MUSDB sample (float refs): numpy's 1e-7 sensitivity", sens, "torch float64 − numpy", d64)
    assert d64["sdr"] <= 1e-9
    for k in ("isr", "sir", "sar"):
        assert d64[k] <= max(0.35, 2 * sens[k]), k


# ---------------------------------------------------- whole-track metrics

@pytest.mark.parametrize("name", ["usdr", "si_sdr", "sdr_gain", "l1_freq"])
def test_track_metrics_float64_parity(name: str) -> None:
    refs, ests = _signals(6, seconds=2.0)
    refs[0] = 0.0  # a silent reference: no NaN on either path (usdr ≈ −116 dB, si_sdr −80 dB)
    want = getattr(SM, name)(refs, ests, SR)
    got = getattr(TS, name)(_t(refs), _t(ests))
    assert got.dtype == torch.float64 and got.shape == (3,)
    assert np.isfinite(want).all()
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-9)
    batch = getattr(TS, name)(_t(np.stack([refs, ests])), _t(np.stack([ests, refs])))
    np.testing.assert_allclose(batch[0].numpy(), want, rtol=0, atol=1e-9)


def test_usdr_mdx_and_bleed_full_tolerance() -> None:
    refs, ests = _signals(7, seconds=2.0)
    np.testing.assert_allclose(TS.usdr_mdx(_t(refs), _t(ests)).numpy(), SM.usdr_mdx(refs, ests, SR), atol=1e-4)
    b32, f32 = TS.bleed_full(_t(refs), _t(ests), SR)  # MSST's float32
    b, f = SM.bleed_full(refs, ests, SR)  # MSST's own torch ops
    np.testing.assert_allclose(b32.numpy(), b, atol=1e-4)
    np.testing.assert_allclose(f32.numpy(), f, atol=1e-4)
    b64, f64 = TS.bleed_full(_t(refs), _t(ests), SR, dtype=torch.float64)
    bn, fn = SM.bleed_full(refs, ests, SR, precision="float64")
    np.testing.assert_allclose(b64.numpy(), bn, atol=1e-9)
    np.testing.assert_allclose(f64.numpy(), fn, atol=1e-9)
    assert 0 < b.min() < 100 and 0 < f.min() < 100


# ----------------------------------------------------------- evaluate

def test_nanmedian_is_numpys() -> None:
    x = torch.tensor([[1.0, math.nan, 3.0, 2.0], [math.nan] * 4, [1.0, 2.0, 3.0, math.inf], [5.0, 1.0, 2.0, 4.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanmedian(x.numpy(), axis=1)
    np.testing.assert_array_equal(nanmedian(x).numpy(), want)


def test_evaluate_returns_tensors_on_the_input_device_with_numpys_rows() -> None:
    refs, ests = _signals(8)
    names = ["drums", "bass", "other"]
    metrics = ["bsseval_v4", "usdr", "si_sdr", "bleedless", "fullness"]
    out = evaluate(_t(ests)[None], _t(refs)[None], metrics, sample_rate=SR, framewise=True)
    for k, v in out.items():
        assert isinstance(v, torch.Tensor) and v.device == torch.device("cpu"), k
    assert tuple(out["sdr_bsseval_v4"].shape) == (1, 3) and tuple(out["SDR"].shape) == (1, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ev = np_evaluate(refs, ests, SR, metrics=metrics, names=names)
    n = 0
    for row in ev.rows:
        if row["aggregation"] not in ("median_frames", "track"):
            continue
        v = float(out[row["metric"]][0, names.index(row["target"])])
        assert math.isfinite(row["value"])
        tol = 1e-4 if row["metric"] in ("bleedless", "fullness") else 1e-9
        assert v == pytest.approx(row["value"], abs=tol), row
        n += 1
    assert n == 3 * 4 + 3 * 4
    mean = evaluate(_t(ests), _t(refs), "sdr_bsseval_v4", aggregation="mean_frames")
    assert set(mean) == {"sdr_bsseval_v4"} and tuple(mean["sdr_bsseval_v4"].shape) == (3,)
    with pytest.raises(InputError, match="log_wmse"):
        evaluate(_t(ests), _t(refs), ["log_wmse"])


# --------------------------------------------- the 'device' metric option

def test_evaluate_device_option_equals_numpy() -> None:
    refs, ests = _signals(9, nsrc=4)
    names = ["vocals", "drums", "bass", "other"]
    kw = {"metrics": ["bsseval_v4", "usdr", "si_sdr"], "names": names, "targets": ["vocals", "accompaniment"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = np_evaluate(refs, ests, SR, **kw)
        b = np_evaluate(refs, ests, SR, device="torch", **kw)
    assert b.info["device"] == "cpu" and a.info["device"] == "numpy"
    assert all(s.startswith("torch:") for s in b.info["bsseval_solver"])
    assert len(a.rows) == len(b.rows) > 0
    for x, y in zip(a.rows, b.rows):
        assert (x["target"], x["metric"], x["aggregation"]) == (y["target"], y["metric"], y["aggregation"])
        assert y["value"] == pytest.approx(x["value"], abs=0.01) and math.isfinite(x["value"])


@pytest.mark.parametrize("device", ["tpu", "cuda:x", 3])
def test_unknown_device_is_an_input_error_naming_the_field(device: object) -> None:
    refs, ests = _signals(10, seconds=1.0)
    with pytest.raises(InputError, match="metric_options.device") as exc:
        np_evaluate(refs, ests, SR, names=["a", "b", "c"], device=device)
    assert exc.value.details.get("field") == "metric_options.device"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_an_input_error() -> None:
    refs, ests = _signals(10, seconds=1.0)
    with pytest.raises(InputError, match=r"metric_options.device: 'cuda' asks for a GPU"):
        np_evaluate(refs, ests, SR, names=["a", "b", "c"], device="cuda")


def test_run_spec_accepts_device_outside_the_metrics_hash() -> None:
    from stemlab.errors import ConfigError
    from stemlab.runs import load_spec

    base = {"datasets": ["demo"], "providers": ["oracle:irm"]}
    plain = load_spec(base)
    on = load_spec({**base, "metric_options": {"device": "Torch"}})
    assert on.metric_options.device == "torch" and dict(on.metric_options) == {"device": "torch"}
    assert plain.metric_options.device == "cpu"
    assert on.metrics_hash == plain.metrics_hash
    with pytest.raises(ConfigError, match="metric_options.device: expected 'cpu'"):
        load_spec({**base, "metric_options": {"device": "gpu"}})


def test_score_stems_and_stemlab_score_with_device_torch(tmp_path: Path) -> None:
    sf = pytest.importorskip("soundfile")
    import pandas as pd

    import stemlab.datasets as D
    from stemlab import Stems
    from stemlab.cli import main
    from stemlab.metrics.scoring import score_stems

    # the harness's scorer (runner.score_stems passes dict(spec.metric_options))
    track = D.load("demo", tracks=1, seconds=3.0)[0]
    rng = np.random.RandomState(0)
    refs = track.references
    est = Stems({n: refs[n] * 0.9 + (0.01 * rng.randn(*refs[n].shape)).astype(np.float32) for n in refs.names},
                refs.sample_rate)
    a = score_stems(est, track, metrics=["bsseval_v4", "usdr"])
    b = score_stems(est, track, metrics=["bsseval_v4", "usdr"], metric_options={"device": "torch"})
    assert len(a["rows"]) == len(b["rows"]) > 0
    for x, y in zip(a["rows"], b["rows"]):
        assert y["metric"] == x["metric"] and y["value"] == pytest.approx(x["value"], abs=0.01)
    # stemlab score --device torch on a folder dataset
    sr = 8000
    est_root = tmp_path / "est"
    for name in ("song-a", "song-b"):
        (tmp_path / "refs" / name).mkdir(parents=True)
        (est_root / name).mkdir(parents=True)
        for i, stem in enumerate(("vocals", "drums", "bass")):
            t = np.arange(2 * sr) / sr
            x = (0.3 * np.sin(2 * np.pi * 150 * (i + 1) * t) + 0.1 * rng.randn(t.size)).astype(np.float32)[None]
            sf.write(tmp_path / "refs" / name / f"{stem}.wav", x.T, sr, subtype="FLOAT")
            e = (x + 0.05 * rng.randn(*x.shape)).astype(np.float32)
            sf.write(est_root / name / f"{stem}.wav", e.T, sr, subtype="FLOAT")
    common = [str(est_root), "--dataset", "folder", "--root", str(tmp_path / "refs"), "--stems", "vocals,drums,bass",
              "--metrics", "bsseval_v4,si_sdr"]
    assert main(["score", *common, "-o", str(tmp_path / "np")]) == 0
    assert main(["score", *common, "--device", "torch", "-o", str(tmp_path / "pt")]) == 0
    s_np = pd.read_csv(tmp_path / "np" / "scores.csv").sort_values(["track", "target", "metric", "aggregation"])
    s_pt = pd.read_csv(tmp_path / "pt" / "scores.csv").sort_values(["track", "target", "metric", "aggregation"])
    assert len(s_np) == len(s_pt) > 0 and np.isfinite(s_np["value"]).all()
    np.testing.assert_allclose(s_pt["value"].to_numpy(), s_np["value"].to_numpy(), atol=0.01)
    with pytest.raises(InputError, match="metric_options.device"):
        from stemlab.metrics.score_dir import score

        score(est_root, "folder", root=tmp_path / "refs", stems=["vocals"], device="npu")


def test_lu_on_cpu_survives_a_change_of_torch_threads() -> None:
    """torch 2.13's batched CPU LU (oneMKL) hangs once torch.set_num_threads
    has been changed in the process (tests/metrics/test_simple.py does); the
    backend solves CPU items one at a time. In a subprocess, with a timeout."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, torch\n"
        "from stemlab.metrics.torch import bsseval as TB\n"
        "n = torch.get_num_threads(); torch.set_num_threads(1); torch.set_num_threads(max(n, 2))\n"
        "rng = np.random.default_rng(0)\n"
        "r = torch.from_numpy(rng.standard_normal((3, 2, 44100)))\n"
        "e = r + 0.1 * torch.from_numpy(rng.standard_normal((3, 2, 44100)))\n"
        "res = TB.bss_eval_v4(r, e, solver='lu')\n"
        "print(float(res.isr.mean()))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                         cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "DLASWP" not in out.stderr
    assert 10 < float(out.stdout.strip().splitlines()[-1]) < 60
