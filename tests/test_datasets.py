"""Datasets: the real MUSDB sample, exact splits, HQ/folder layouts, the demo
set's byte-determinism, validation reports and the registry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import stemlab.datasets as D
from stemlab import audio
from stemlab.datasets.demo import DemoDataset
from stemlab.errors import DatasetError

SR = 44100


def _tone(freq: float, seconds: float = 1.0, amp: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return np.stack([amp * np.sin(2 * np.pi * freq * t), amp * np.sin(2 * np.pi * freq * 1.01 * t)]).astype(np.float32)


# ------------------------------------------------------------------ MUSDB sample

@pytest.mark.shared_data
def test_musdb_sample_decodes_exactly(musdb_sample: Path) -> None:
    ds = D.load("musdb18", root=musdb_sample)
    assert ds.track_names() == ["Music Delta - 80s Rock"]
    t = ds[0]
    assert t.sample_rate == 44100 and t.subset == "train"
    assert t.target_names == ("drums", "bass", "other", "vocals")
    mix, refs = t.mixture, t.references
    assert mix.shape == (2, 300032)
    assert refs is not None and all(refs[n].shape == (2, 300032) for n in refs)
    meta = dict(t.metadata)
    assert meta["decoded_samples"] == {k: 300032 for k in ("mixture", "drums", "bass", "other", "vocals")}
    assert "libavcodec" in meta["decoder"] and meta["split"] == "train"
    # mixture ≈ sum of stems within AAC coding error (measured: -31.6 dB, max 0.054)
    err = mix.astype(np.float64) - refs.sum().astype(np.float64)
    rel_db = 10 * np.log10(np.mean(err**2) / np.mean(mix.astype(np.float64) ** 2))
    assert rel_db < -28.0
    assert float(np.abs(err).max()) < 0.08
    # lazy + releasable
    t.release()
    assert "mixture" not in t.__dict__


@pytest.mark.shared_data
def test_musdb_sample_validates(musdb_sample: Path) -> None:
    report = D.validate("musdb18", root=musdb_sample)
    assert report.ok and report.tracks_checked == 1
    # a partial copy is reported, not failed
    assert any("card expects 100" in str(p) for p in report.problems)


# --------------------------------------------------------------- splits

def _fake_musdb(root: Path, train: list[str], test: list[str]) -> None:
    for sub, names in (("train", train), ("test", test)):
        for i, n in enumerate(names):
            streams = [_tone(200 + 50 * j + 7 * i, 0.3) for j in range(5)]
            audio.encode_multistream(root / sub / f"{n}.stem.mp4", streams, SR, bitrate=64_000)


def test_musdb_splits_never_overlap(tmp_path: Path) -> None:
    valid_names = list(D.card("musdb18").validation_tracks)
    assert len(valid_names) == 14
    train = ["A Train Song", "B Train Song", valid_names[0], valid_names[5]]
    test = ["Test One", "Test Two"]
    _fake_musdb(tmp_path, train, test)
    splits = {s: set(D.load("musdb18", root=tmp_path, split=s).track_names()) for s in ("train", "valid", "test")}
    assert splits["train"] == {"A Train Song", "B Train Song"}
    assert splits["valid"] == {valid_names[0], valid_names[5]}
    assert splits["test"] == set(test)
    assert not (splits["train"] & splits["valid"]) and not (splits["valid"] & splits["test"])
    assert not (splits["train"] & splits["test"])
    # the union is everything; musdb's bug (valid ⊃ test) cannot happen
    everything = set(D.load("musdb18", root=tmp_path).track_names())
    assert everything == splits["train"] | splits["valid"] | splits["test"]
    assert set(D.load("musdb18", root=tmp_path, subset="train").track_names()) == splits["train"] | splits["valid"]
    with pytest.raises(DatasetError, match="split 'valid' is part of subset 'train', not 'test'"):
        D.load("musdb18", root=tmp_path, subset="test", split="valid")
    t = D.load("musdb18", root=tmp_path, split="valid")[0]
    assert t.metadata["split"] == "valid"
    assert len(t.references.names) == 4


def test_musdb_bad_stem_file_is_reported(tmp_path: Path) -> None:
    _fake_musdb(tmp_path, ["Good"], ["Other"])
    # a stem file with too few streams
    audio.encode_multistream(tmp_path / "test" / "Broken.stem.mp4", [_tone(300, 0.3)] * 2, SR, bitrate=64_000)
    report = D.validate("musdb18", root=tmp_path, subset="test")
    assert not report.ok
    msgs = [str(p) for p in report.problems]
    assert any("Broken" in m and "has 2 audio stream(s)" in m for m in msgs)


# ---------------------------------------------------------------- HQ and folders

def _stem_folder(folder: Path, stems: dict[str, np.ndarray], mixture: bool = True, ext: str = "wav") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n, a in stems.items():
        audio.encode(folder / f"{n}.{ext}", a, SR, subtype="PCM_24" if ext in ("wav", "flac") else "PCM_16")
    if mixture:
        audio.encode(folder / f"mixture.{ext}", sum(stems.values()), SR, subtype="PCM_24")


def test_musdb_hq_layout(tmp_path: Path) -> None:
    stems = {n: _tone(f, 0.5) for n, f in zip(("drums", "bass", "other", "vocals"), (80, 110, 440, 660))}
    _stem_folder(tmp_path / "train" / "Song A", stems)
    _stem_folder(tmp_path / "test" / "Song B", stems, ext="flac")
    ds = D.load("musdb18hq", root=tmp_path)
    assert ds.track_names() == ["Song A", "Song B"]
    t = ds["Song B"]
    assert t.subset == "test" and t.references.names == ("drums", "bass", "other", "vocals")
    assert float(np.abs(t.mixture - t.references.sum()).max()) < 1e-5
    assert D.validate("musdb18hq", root=tmp_path).ok


def test_hq_validation_finds_missing_stem_rate_and_truncation(tmp_path: Path) -> None:
    stems = {n: _tone(f, 0.5) for n, f in zip(("drums", "bass", "other", "vocals"), (80, 110, 440, 660))}
    _stem_folder(tmp_path / "test" / "Missing", {k: v for k, v in stems.items() if k != "bass"})
    _stem_folder(tmp_path / "test" / "Rate", stems)
    audio.encode(tmp_path / "test" / "Rate" / "mixture.wav", audio.resample(sum(stems.values()), SR, 48000), 48000)
    _stem_folder(tmp_path / "test" / "Cut", stems)
    p = tmp_path / "test" / "Cut" / "vocals.wav"
    p.write_bytes(p.read_bytes()[:5000])
    report = D.validate("musdb18hq", root=tmp_path, subset="test")
    by_track = {}
    for prob in report.problems:
        by_track.setdefault(prob.track, []).append(str(prob))
    assert "missing stem file(s) ['bass']" in " ".join(by_track["Missing"])
    assert "48000 Hz" in " ".join(by_track["Rate"])
    assert "truncated" in " ".join(by_track["Cut"])
    assert not report.ok and report.tracks_checked == 3
    with pytest.raises(DatasetError, match=r"missing stem file\(s\) \['bass'\]"):
        D.load("musdb18hq", root=tmp_path, subset="test")["Missing"]


def test_folder_dataset_custom_stems_and_plain_mixtures(tmp_path: Path) -> None:
    _stem_folder(tmp_path / "songs" / "one", {"vocals": _tone(500), "accompaniment": _tone(120)})
    _stem_folder(tmp_path / "songs" / "nomix", {"vocals": _tone(500), "accompaniment": _tone(120)}, mixture=False)
    ds = D.load("folder", root=tmp_path / "songs", stems=["vocals", "accompaniment"])
    assert ds.track_names() == ["nomix", "one"]
    t = ds["nomix"]
    assert t.metadata["mixture_is_sum_of_stems"] is True
    np.testing.assert_allclose(t.mixture, t.references.sum(), atol=1e-6)

    plain = tmp_path / "plain"
    plain.mkdir()
    audio.encode(plain / "demo take.mp3", _tone(300), SR)
    audio.encode(plain / "other.flac", _tone(200), SR)
    (plain / "readme.txt").write_text("not audio")
    ds2 = D.load("folder", root=plain)
    assert ds2.track_names() == ["demo take", "other"]
    t2 = ds2["demo take"]
    assert not t2.has_references and t2.references is None
    assert t2.mixture.shape[0] == 2


def test_folder_mismatched_lengths_is_clear(tmp_path: Path) -> None:
    f = tmp_path / "t" / "song"
    f.mkdir(parents=True)
    audio.encode(f / "vocals.wav", _tone(500, 1.0), SR)
    audio.encode(f / "drums.wav", _tone(100, 0.5), SR)
    t = D.load("folder", root=tmp_path / "t")["song"]
    with pytest.raises(DatasetError, match="stems have different lengths"):
        _ = t.references


def test_folder_root_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        D.load("folder", root=tmp_path / "absent")
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(DatasetError, match="is not a directory"):
        D.load("folder", root=f)
    with pytest.raises(DatasetError, match="pass root="):
        D.load("musdb18")
    with pytest.raises(
        DatasetError, match=r"unknown dataset 'musdb19'; known: \['demo', 'folder', 'musdb18', 'musdb18hq'\]"
    ):
        D.load("musdb19")
    assert (
        D.load("musdb-hq", root=tmp_path, subset=None).name == "musdb18hq"
        if (tmp_path / "train").mkdir() is None
        else True
    )


# ------------------------------------------------------------------- demo

def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.wav"))
    }


def test_demo_is_byte_identical_across_generations(tmp_path: Path) -> None:
    a = DemoDataset(root=tmp_path / "a", tracks=2, seconds=3.0)
    b = DemoDataset(root=tmp_path / "b", tracks=2, seconds=3.0)
    ha, hb = _tree_hashes(tmp_path / "a"), _tree_hashes(tmp_path / "b")
    assert len(ha) == 10 and ha == hb
    assert a.manifest == b.manifest
    DemoDataset(root=tmp_path / "c", tracks=2, seconds=3.0, seed=1)
    assert _tree_hashes(tmp_path / "c") != ha


def test_demo_default_matches_card_checksums() -> None:
    ds = D.load("demo")
    assert len(ds) == 4
    report = ds.validate()
    assert report.ok, report.format()
    pinned = D.card("demo").checksums
    assert len(pinned) == 20
    assert all(pinned[f"{t}/{f}"] == h for t, files in ds.manifest.items() for f, h in files.items())


def test_demo_tracks_are_musical_multitracks(demo_small) -> None:
    for t in demo_small:
        refs = t.references
        assert t.sample_rate == 44100 and t.mixture.shape == (2, 4 * 44100)
        assert refs.names == ("drums", "bass", "other", "vocals")
        # exact integer sum of 16-bit stems
        assert float(np.abs(t.mixture - refs.sum()).max()) < 1e-6
        # every stem is audible and the mixture does not clip
        for n, a in refs.items():
            assert 10 * np.log10(np.mean(a.astype(np.float64) ** 2)) > -35, n
        assert float(np.abs(t.mixture).max()) < 0.9
        # the first bar has no vocals (intro), later there are
        bar = int(4 * 60 / 112 * 44100)
        v = refs["vocals"]
        assert float(np.abs(v[:, : int(bar * 0.9)]).max()) == 0.0
        # stems are spectrally distinct (power spectra): bass low, vocals mid,
        # drums carry the high band (hats, snare noise)
        def power(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return np.abs(np.fft.rfft(x.mean(axis=0))) ** 2, np.fft.rfftfreq(x.shape[1], 1 / 44100)

        def centroid(x: np.ndarray) -> float:
            p, f = power(x)
            return float((p * f).sum() / p.sum())

        def high_fraction(x: np.ndarray) -> float:
            p, f = power(x)
            return float(p[f > 5000].sum() / p.sum())

        assert centroid(refs["bass"]) < 250 < 500 < centroid(refs["vocals"])
        assert high_fraction(refs["drums"]) > 0.003 > 1e-4 > high_fraction(refs["bass"])


def test_demo_arguments_are_checked() -> None:
    with pytest.raises(DatasetError, match="tracks must be 1..4, got 9"):
        D.load("demo", tracks=9)
    with pytest.raises(DatasetError, match=r"seconds must be in \[1, 600\]"):
        D.load("demo", seconds=0.1)
    with pytest.raises(DatasetError, match="unexpected keyword"):
        D.load("demo", bogus=1)


def test_filter_and_indexing(demo_small) -> None:
    names = demo_small.track_names()
    assert len(demo_small.filter(limit=1)) == 1
    assert demo_small.filter(pattern="*01*").track_names() == [names[0]]
    assert demo_small.filter(names=[names[1]])[0].name == names[1]
    with pytest.raises(DatasetError, match="no track"):
        demo_small.filter(names=["nope"])
