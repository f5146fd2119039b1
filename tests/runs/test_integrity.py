"""Integrity at scale: a bad track is a failed row, never a dead run; tracks
sharing a mixture are scored against their own references; corrupt caches are
recomputed (re-downloaded, never re-paid); a lost ledger is rebuilt from the
cache; an output directory belongs to one spec.

Every expectation is recomputed here from the audio with plain numpy."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from stemlab.errors import RunError
from stemlab.runs import load_results, run
from stemlab.sandbox import SandboxPool

SR = 22050
N = 2 * SR
STEMS = ("vocals", "drums", "bass", "other")


def _stems(seed: int) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    t = np.arange(N) / SR
    return {k: (0.1 * r.standard_normal((2, N)) * np.sin(2 * np.pi * (i + 1) * t) ** 2).astype(np.float32)
            for i, k in enumerate(STEMS)}


def _song(root: Path, name: str, stems: dict[str, np.ndarray], mix: np.ndarray | None = None) -> None:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for k, v in stems.items():
        sf.write(d / f"{k}.wav", v.T, SR, subtype="FLOAT")
    m = mix if mix is not None else np.sum(list(stems.values()), axis=0)
    sf.write(d / "mixture.wav", np.asarray(m).T, SR, subtype="FLOAT")


def _usdr(ref: np.ndarray, est: np.ndarray) -> float:
    """MSST's uSDR written out: 10·log10((Σs² + ε) / (Σ(s−ŝ)² + ε)), float64."""
    s, e = ref.astype(np.float64), est.astype(np.float64)
    return float(10 * np.log10((np.sum(s * s) + 1e-8) / (np.sum((s - e) ** 2) + 1e-8)))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "songs"
    a = _stems(1)
    _song(root, "a-good", a)
    _song(root, "b-good", _stems(2))
    # the same mixture as a-good, split differently into references
    c = dict(a)
    c["bass"] = a["bass"] + 0.5 * a["other"]
    c["other"] = 0.5 * a["other"]
    _song(root, "c-samemix", c, mix=np.sum(list(a.values()), axis=0))
    bad = _stems(3)
    m = np.sum(list(bad.values()), axis=0)
    m[0, 100] = np.nan
    _song(root, "d-nan", bad, mix=m)
    e = root / "e-empty"
    e.mkdir()
    for k in (*STEMS, "mixture"):
        sf.write(e / f"{k}.wav", np.zeros((0, 2), np.float32), SR, subtype="FLOAT")
    _song(root, "f-corrupt", _stems(4))
    (root / "f-corrupt" / "mixture.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8)
    g = _stems(5)
    _song(root, "g-6ch", g)
    sf.write(root / "g-6ch" / "mixture.wav", np.tile(np.sum(list(g.values()), axis=0), (3, 1)).T, SR,
             subtype="FLOAT")
    return root


def _spec(root: Path, out: Path, providers=("baseline:mixture", "oracle:irm"), **kw) -> dict:
    d = {"datasets": [{"name": "folder", "root": str(root)}], "providers": list(providers), "metrics": ["usdr"],
         "output": str(out)}
    d.update(kw)
    return d


def test_bad_tracks_are_failed_rows_and_shared_mixtures_keep_their_own_references(dataset, tmp_path):
    out = tmp_path / "out"
    res = run(_spec(dataset, out), quiet=True)
    jobs = res.jobs.set_index(["track", "provider"])
    assert len(res.jobs) == 7 * 2
    good = ["a-good", "b-good", "c-samemix"]
    assert (jobs.loc[good, "status"] == "done").all()
    why = {t: jobs.loc[(t, "baseline:mixture"), "error"] for t in ("d-nan", "e-empty", "f-corrupt", "g-6ch")}
    assert (jobs.loc[list(why), "status"] == "failed").all()
    assert "NaN/Inf" in why["d-nan"] and "d-nan/mixture.wav" in why["d-nan"]
    assert "0 samples" in why["e-empty"] and "e-empty/mixture.wav" in why["e-empty"]
    assert "f-corrupt/mixture.wav" in why["f-corrupt"]
    assert "6 channels" in why["g-6ch"]
    # identical mixtures: the mixture baseline separates once, the oracle (reads references) per track
    assert jobs.loc[("a-good", "baseline:mixture"), "job_key"] == jobs.loc[("c-samemix", "baseline:mixture"), "job_key"]
    assert jobs.loc[("a-good", "oracle:irm"), "job_key"] != jobs.loc[("c-samemix", "oracle:irm"), "job_key"]
    # each track is scored against its own references: uSDR of the mixture as every estimate
    s = res.scores.set_index(["track", "provider", "target"])["value"]
    for track in good:
        d = dataset / track
        mix = sf.read(d / "mixture.wav", dtype="float32")[0].T
        for stem in STEMS:
            ref = sf.read(d / f"{stem}.wav", dtype="float32")[0].T
            # (1e-6: the estimate passed the 24-bit FLAC stem cache)
            assert s[(track, "baseline:mixture", stem)] == pytest.approx(_usdr(ref, mix), abs=1e-6)
    assert abs(s[("c-samemix", "baseline:mixture", "bass")] - s[("a-good", "baseline:mixture", "bass")]) > 1.0


def test_exit_code_follows_strict(dataset, tmp_path):
    args = [sys.executable, "-m", "stemlab.cli", "run", "--dataset", "folder", "--root", str(dataset),
            "--provider", "baseline:mixture", "--metrics", "usdr", "-q"]
    lenient = subprocess.run(args + ["-o", str(tmp_path / "o1")], capture_output=True, text=True)
    assert lenient.returncode == 0, lenient.stderr
    strict = subprocess.run(args + ["-o", str(tmp_path / "o2"), "--strict"], capture_output=True, text=True)
    assert strict.returncode == 1
    jobs = pd.read_csv(tmp_path / "o2" / "jobs.csv")
    assert sorted(jobs.status) == ["done"] * 3 + ["failed"] * 4


def _scores_of(res) -> pd.DataFrame:
    return res.scores.sort_values(["track", "provider", "target", "metric"]).reset_index(drop=True)


def test_corrupt_score_and_stem_caches_are_recomputed_with_a_warning(dataset, tmp_path, caplog):
    for t in ("d-nan", "e-empty", "f-corrupt", "g-6ch"):
        shutil.rmtree(dataset / t)
    out = tmp_path / "out"
    first = run(_spec(dataset, out), quiet=True)
    ref = _scores_of(first)
    assert len(ref) == 3 * 2 * 5  # 4 stems + accompaniment
    score_files = sorted((out / "cache" / "scores").rglob("*.json"))
    manifests = sorted((out / "cache" / "stems").glob("*/manifest.json"))
    assert len(score_files) == 6 and len(manifests) == 5  # two tracks share the baseline's separation
    bad = {score_files[0]: "{}", score_files[1]: "[1, 2]", score_files[2]: "not json",
           manifests[0]: "{}", manifests[1]: "[1, 2]"}
    for p, text in bad.items():
        p.write_text(text)
    caplog.set_level(logging.WARNING, logger="stemlab")
    again = run(_spec(dataset, out), quiet=True)
    assert (again.jobs.status == "done").all()
    pd.testing.assert_frame_equal(_scores_of(again), ref)
    warned = "\n".join(r.getMessage() for r in caplog.records)
    for p in bad:
        assert str(p.parent if p.name == "manifest.json" else p) in warned, p


def _remote_spec(out: Path) -> dict:
    return {"datasets": [{"name": "demo", "options": {"tracks": 2, "seconds": 4.0}}],
            "providers": [{"provider": "aistemsplitter:htdemucs", "sandbox": True}], "metrics": ["usdr"],
            "output": str(out)}


def test_paid_stems_survive_a_lost_ledger_and_corrupt_caches(tmp_path, caplog):
    out = tmp_path / "paid"
    with SandboxPool() as pool:
        sb = pool.get("aistemsplitter")
        first = run(_remote_spec(out), quiet=True, sandboxes=pool)
        assert (first.jobs.status == "done").all()
        n_jobs, charged = len(sb.ledger.jobs), sb.ledger.charged()
        assert n_jobs == 2 and charged > 0
        paid = first.jobs.set_index("track")[["remote_id", "cost_usd"]]

        # 1. the ledger is deleted: rebuilt from cache/paid, nothing is paid again
        for f in out.glob("ledger.sqlite*"):
            f.unlink()
        caplog.set_level(logging.WARNING, logger="stemlab")
        second = run(_remote_spec(out), quiet=True, sandboxes=pool)
        assert (second.jobs.status == "done").all()
        assert len(sb.ledger.jobs) == n_jobs and sb.ledger.charged() == charged
        pd.testing.assert_frame_equal(second.jobs.set_index("track")[["remote_id", "cost_usd"]], paid)
        assert "restored from" in caplog.text

        # 2. ledger and paid records gone: the stem manifests still say what was paid
        for f in out.glob("ledger.sqlite*"):
            f.unlink()
        shutil.rmtree(out / "cache" / "paid")
        third = run(_remote_spec(out), quiet=True, sandboxes=pool)
        assert len(sb.ledger.jobs) == n_jobs and sb.ledger.charged() == charged
        pd.testing.assert_frame_equal(third.jobs.set_index("track")[["remote_id", "cost_usd"]], paid)
        pd.testing.assert_frame_equal(_scores_of(third), _scores_of(first))

        # 3. a paid job's stems are corrupt: downloaded again by remote id, not resubmitted, not failed
        for m in (out / "cache" / "stems").glob("*/manifest.json"):
            m.write_text("{}")
        shutil.rmtree(out / "cache" / "scores")
        fourth = run(_remote_spec(out), quiet=True, sandboxes=pool)
        assert (fourth.jobs.status == "done").all(), fourth.jobs[["status", "error"]]
        assert len(sb.ledger.jobs) == n_jobs and sb.ledger.charged() == charged
        pd.testing.assert_frame_equal(fourth.jobs.set_index("track")[["remote_id", "cost_usd"]], paid)
        assert len(_scores_of(fourth)) == len(_scores_of(first))


def test_an_output_directory_belongs_to_one_spec(dataset, tmp_path):
    for t in ("c-samemix", "d-nan", "e-empty", "f-corrupt", "g-6ch"):
        shutil.rmtree(dataset / t)
    out = tmp_path / "out"
    run(_spec(dataset, out), quiet=True)
    assert not (out / "museval").exists()  # usdr only: no museval JSON
    run(_spec(dataset, out, metrics=["sdr_bsseval_v4"]), quiet=True)  # other metrics: same owner, re-scored
    with pytest.raises(RunError, match="another spec"):
        run(_spec(dataset, out, providers=["baseline:mixture"]), quiet=True)
    # the refused run touched nothing
    assert sorted(load_results(out).jobs.provider.unique()) == ["baseline:mixture", "oracle:irm"]
    # full BSSEval writes museval JSON; --overwrite replaces the other spec's results, none stays behind
    run(_spec(dataset, out, metrics=["bsseval_v4"]), quiet=True)
    assert sorted(p.name for p in (out / "museval").iterdir()) == ["baseline_mixture", "oracle_irm"]
    res = run(_spec(dataset, out, providers=["baseline:mixture"], metrics=["bsseval_v4"]), quiet=True,
              overwrite=True)
    assert sorted(p.name for p in (out / "museval").iterdir()) == ["baseline_mixture"]
    assert sorted(res.jobs.provider.unique()) == ["baseline:mixture"]
    owner = json.loads((out / "run-owner.json").read_text())
    assert owner["spec_hash"] == res.meta["spec_hash"]
