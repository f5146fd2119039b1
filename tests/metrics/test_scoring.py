"""score_stems (what the harness calls) and ``stemlab score`` on a directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from stemlab import Stems
from stemlab.errors import InputError
from stemlab.metrics.score_dir import score
from stemlab.metrics.scoring import score_stems

sf = pytest.importorskip("soundfile")


def _snr(s: np.ndarray, e: np.ndarray) -> float:
    s = s.astype(np.float64)
    e = e.astype(np.float64)
    return 10 * math.log10(np.sum(s**2) / np.sum((e - s) ** 2))


def _usdr(s: np.ndarray, e: np.ndarray) -> float:  # MSST's sdr, ε = 1e-8
    s = s.astype(np.float64)
    e = e.astype(np.float64)
    return 10 * math.log10((np.sum(s**2) + 1e-8) / (np.sum((e - s) ** 2) + 1e-8))


@pytest.fixture(scope="module")
def demo_track():
    import stemlab.datasets as D

    return D.load("demo", tracks=1, seconds=3.0)[0]


def _oracle_ish(track, rng, gain=0.9, noise=0.01):
    refs = track.references
    return Stems({n: refs[n] * gain + (noise * rng.randn(*refs[n].shape)).astype(np.float32) for n in refs.names},
                 refs.sample_rate)


def test_score_stems_on_demo_track(demo_track):
    pytest.importorskip("stemlab.metrics.simple")
    rng = np.random.RandomState(0)
    est = _oracle_ish(demo_track, rng)
    refs = demo_track.references
    out = score_stems(est, demo_track, metrics=("sdr_bsseval_v4", "usdr"), metric_options={},
                      alignment={"enabled": True}, targets=None)
    assert set(out) >= {"rows", "frames", "museval", "corrections"}
    assert out["corrections"] == {} and out["museval"] is None  # same shape: nothing to align; SDR-only
    sr = refs.sample_rate
    for n in refs.names:
        assert [r["value"] for r in out["rows"] if r["target"] == n and r["metric"] == "usdr"] == [
            pytest.approx(_usdr(refs[n], est[n]), abs=1e-6)]
        # frame SDR = the frame SNR where no stem is silent (museval's rule), NaN elsewhere
        frames = [f for f in out["frames"] if f["target"] == n]
        assert len(frames) == 3 and all({"target", "metric", "frame", "time", "value"} <= set(f) for f in frames)
        for f in frames:
            sl = slice(f["frame"] * sr, (f["frame"] + 1) * sr)
            silent = any(not refs[m][:, sl].sum(axis=0).any() or not est[m][:, sl].sum(axis=0).any()
                         for m in refs.names)
            if silent:
                assert math.isnan(f["value"])
            else:
                assert f["value"] == pytest.approx(_snr(refs[n][:, sl], est[n][:, sl]), abs=1e-6)
    row = [r for r in out["rows"] if r["metric"] == "sdr_bsseval_v4" and r["aggregation"] == "median_frames"][0]
    assert row["frames_used"] + row["frames_dropped"] == 3 and row["unit"] == "dB"


def test_score_stems_aligns_a_resampled_delayed_output(demo_track):
    pytest.importorskip("stemlab.metrics.align")
    from stemlab import audio

    rng = np.random.RandomState(1)
    est = _oracle_ish(demo_track, rng)
    base = score_stems(est, demo_track, metrics=("sdr_bsseval_v4",))
    # a service output: 48 kHz, 40 ms encoder delay, 0.2 s longer
    delay = 1920
    moved = {n: np.concatenate([np.zeros((a.shape[0], delay), np.float32), audio.resample(a, 44100, 48000),
                                np.zeros((a.shape[0], 9600 - delay), np.float32)], axis=1)
             for n, a in est.items()}
    out = score_stems(Stems(moved, 48000), demo_track, metrics=("sdr_bsseval_v4",), alignment={"enabled": True})
    c = out["corrections"]
    assert c["resampled_from"] == 48000 and c["offset_samples"] == 1764  # 40 ms at 44.1 kHz
    for r0, r1 in zip(base["rows"], out["rows"]):
        assert (r0["target"], r0["aggregation"]) == (r1["target"], r1["aggregation"])
        if not math.isnan(r0["value"]):
            assert r1["value"] == pytest.approx(r0["value"], abs=0.5)  # only the resampler's round trip differs
    with pytest.raises(InputError, match="48000 Hz"):
        score_stems(Stems(moved, 48000), demo_track, metrics=("sdr_bsseval_v4",), alignment={"enabled": False})
    with pytest.raises(InputError, match="alignment"):
        score_stems(est, demo_track, metrics=("sdr_bsseval_v4",), alignment={"enabeld": True})


def test_score_stems_two_stem_output_and_targets(demo_track):
    rng = np.random.RandomState(2)
    est4 = _oracle_ish(demo_track, rng)
    est = Stems({"vocals": est4["vocals"], "accompaniment": est4.sum(["drums", "bass", "other"])}, 44100)
    out = score_stems(est, demo_track, metrics=("sdr_bsseval_v4",), targets=("vocals", "drums", "accompaniment"))
    assert {r["target"] for r in out["rows"]} == {"vocals", "accompaniment"}  # no drums estimate


SR = 8000


def _write_refs(root: Path, rng) -> dict[str, dict[str, np.ndarray]]:
    refs = {}
    for k, name in enumerate(("song-a", "song-b", "song-c", "song-d")):
        T = 2 * SR + 100 * k
        t = np.arange(T) / SR
        d = root / name
        d.mkdir(parents=True)
        refs[name] = {}
        for i, stem in enumerate(("vocals", "drums", "bass")):
            x = (0.3 * np.sin(2 * np.pi * 150 * (i + 1) * t) + 0.1 * rng.randn(T)).astype(np.float32)[None]
            sf.write(d / f"{stem}.wav", x.T, SR, subtype="FLOAT")
            refs[name][stem] = x
    return refs


def test_stemlab_score_cli(tmp_path, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    from stemlab.cli import main

    rng = np.random.RandomState(3)
    refs = _write_refs(tmp_path / "refs", rng)
    est_root = tmp_path / "est"
    ests = {}
    for name, stems in refs.items():
        d = est_root / name
        d.mkdir(parents=True)
        ests[name] = {}
        for stem, x in stems.items():
            if name == "song-b" and stem == "bass":
                continue  # missing target
            e = (x + 0.05 * rng.randn(*x.shape)).astype(np.float32)
            if name == "song-d":
                e = e[:, :-500]  # shorter: padded as museval does
            ests[name][stem] = e
            rate = 16000 if (name == "song-c" and stem == "vocals") else SR
            ext = "flac" if stem == "drums" else "wav"
            sf.write(d / f"{stem}.{ext}", e.T, rate, **({"subtype": "FLOAT"} if ext == "wav" else {}))
    (est_root / "not-a-song").mkdir()
    out = tmp_path / "out"
    rc = main(["score", str(est_root), "--dataset", "folder", "--root", str(tmp_path / "refs"),
               "--stems", "vocals,drums,bass", "--metrics", "bsseval_v4,sdr_bsseval_v4", "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 1  # problems were found …
    assert "song-b: no estimate for target(s) ['bass']" in text
    assert "song-c: vocals.wav is 16000 Hz, references are 8000 Hz" in text and "not scored" in text
    assert "song-d: length(s)" in text and "zero-padded" in text
    assert "not-a-song" in text
    # … and the rest was scored
    import pandas as pd

    scores = pd.read_csv(out / "scores.csv")
    assert sorted(scores["track"].unique()) == ["song-a", "song-b", "song-d"]
    assert set(scores.loc[scores.track == "song-b", "target"]) == {"vocals", "drums"}
    assert pd.read_parquet(out / "scores.parquet").shape == scores.shape
    frames = pd.read_parquet(out / "frames.parquet")
    for name in ("song-a", "song-d"):
        for stem in ("vocals", "drums", "bass"):
            e = np.pad(ests[name][stem], ((0, 0), (0, refs[name][stem].shape[1] - ests[name][stem].shape[1])))
            f = frames[(frames.track == name) & (frames.target == stem) & (frames.metric == "SDR")]
            assert len(f) == 2
            for _, row in f.iterrows():
                sl = slice(int(row.frame) * SR, (int(row.frame) + 1) * SR)
                assert row.value == pytest.approx(_snr(refs[name][stem][:, sl], e[:, sl]), abs=1e-4)
    import museval

    schema = json.loads((Path(museval.__file__).parent / "musdb.schema.json").read_text())
    for name in ("song-a", "song-b", "song-d"):
        doc = json.loads((out / "museval" / "test" / f"{name}.json").read_text())
        jsonschema.validate(doc, schema)
    assert not (out / "museval" / "test" / "song-c.json").exists()
    assert "song-c" in (out / "messages.txt").read_text()

    # with --align the resampled track is scored too
    rc = main(["score", str(est_root), "--dataset", "folder", "--root", str(tmp_path / "refs"),
               "--stems", "vocals,drums,bass", "--metrics", "sdr_bsseval_v4", "--align", "-o", str(tmp_path / "o2")])
    assert "song-c" in set(pd.read_csv(tmp_path / "o2" / "scores.csv")["track"])


def test_score_python_api(tmp_path):
    import stemlab

    rng = np.random.RandomState(4)
    refs = _write_refs(tmp_path / "refs", rng)
    d = tmp_path / "est" / "test" / "song-a"  # museval's {subset}/{track} layout
    d.mkdir(parents=True)
    for stem, x in refs["song-a"].items():
        sf.write(d / f"{stem}.wav", (x * 0.5).T, SR, subtype="FLOAT")
    rep = stemlab.score(tmp_path / "est", "folder", root=tmp_path / "refs", stems=["vocals", "drums", "bass"],
                        metrics="sdr_bsseval_v4", subset=None)
    assert rep.scored == ["song-a"] and rep.ok
    v = rep.scores.query("target == 'vocals' and aggregation == 'median_frames'")["value"].item()
    assert v == pytest.approx(20 * math.log10(1 / 0.5), abs=1e-3)  # ŝ = s/2 → SNR = 6.02 dB
    with pytest.raises(InputError, match="does not exist"):
        score(tmp_path / "nowhere", "folder", root=tmp_path / "refs")
