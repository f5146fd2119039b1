"""Folder datasets decode one file at a time: a mixture made as the sum of
the stems is accumulated in one array (bit-identical to stacking and summing
them, as before), and the mixture decoded to check the references is dropped
at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import stemlab.datasets as D
from stemlab.errors import DatasetError, InputError
from stemlab.testing import traced_peak

SR = 44100
STEMS = ("vocals", "drums", "bass", "other")


def _write(folder: Path, name: str, x: np.ndarray, subtype: str = "FLOAT") -> None:
    sf.write(str(folder / f"{name}.wav"), x.T, SR, subtype=subtype)


def _stems(seconds: float, channels: dict[str, int] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    n = int(seconds * SR)
    return {k: (0.3 * rng.standard_normal(((channels or {}).get(k, 2), n))).astype(np.float32) for k in STEMS}


def _folder(tmp_path: Path, stems: dict[str, np.ndarray], mixture: np.ndarray | None = None) -> Path:
    song = tmp_path / "ds" / "song"
    song.mkdir(parents=True)
    for k, x in stems.items():
        _write(song, k, x)
    if mixture is not None:
        _write(song, "mixture", mixture)
    return tmp_path / "ds"


def _old_sum(stems: dict[str, np.ndarray]) -> np.ndarray:
    """The former load_mixture: every stem converted to the widest layout, stacked, summed."""
    target = max(a.shape[0] for a in stems.values())
    arrs = [np.repeat(a, 2, axis=0) if a.shape[0] < target else a for a in stems.values()]
    return np.sum(arrs, axis=0).astype(np.float32)


@pytest.mark.parametrize("channels", [None, {"bass": 1}, {"vocals": 1, "drums": 1}, {k: 1 for k in STEMS}])
def test_sum_of_stems_is_bit_identical(tmp_path: Path, channels) -> None:
    stems = _stems(2.0, channels)
    t = D.load("folder", root=_folder(tmp_path, stems), stems=list(STEMS))["song"]
    assert t.metadata["mixture_is_sum_of_stems"]
    mix = t.mixture
    assert mix.dtype == np.float32 and mix.flags.c_contiguous
    np.testing.assert_array_equal(mix, _old_sum({k: stems[k] for k in STEMS}))


def _peak(fn):
    fn()  # warm: imports and caches are not the signal's memory
    return traced_peak(fn)


def test_sum_holds_two_signals_not_all_stems(tmp_path: Path) -> None:
    stems = _stems(15.0)
    t = D.load("folder", root=_folder(tmp_path, stems), stems=list(STEMS))["song"]
    one = stems["vocals"].nbytes

    def load():
        t.release()
        return t.mixture

    _, peak = _peak(load)
    assert peak <= 2 * one + (2 << 20), peak / one  # accumulator + the stem being decoded (was 4 stems + 2)


def test_references_do_not_keep_the_mixture(tmp_path: Path) -> None:
    stems = _stems(15.0)
    mixture = _old_sum(stems)
    t = D.load("folder", root=_folder(tmp_path, stems, mixture), stems=list(STEMS))["song"]
    one = stems["vocals"].nbytes

    def load():
        t.release()
        return t.references

    refs, peak = _peak(load)
    assert set(refs.names) == set(STEMS)
    for k in STEMS:
        np.testing.assert_array_equal(refs[k], stems[k])
    assert peak <= 4 * one + (2 << 20), peak / one  # the four stems; the mixture is gone before they decode


def test_errors_unchanged(tmp_path: Path) -> None:
    stems = _stems(0.5)
    stems["drums"] = stems["drums"][:, :-10]
    t = D.load("folder", root=_folder(tmp_path / "a", stems), stems=list(STEMS))["song"]
    with pytest.raises(
        DatasetError, match=r"stems have different lengths \(samples\) \{'vocals': 22050, 'drums': 22040"
    ):
        _ = t.mixture
    with pytest.raises(DatasetError, match="different lengths"):
        _ = t.references
    # a 6-channel stem beside stereo ones: the channel policy's error, naming the first file converted
    stems = _stems(0.5, {"other": 6})
    t = D.load("folder", root=_folder(tmp_path / "b", stems), stems=list(STEMS))["song"]
    for get in (lambda: t.mixture, lambda: t.references):
        with pytest.raises(InputError, match=r"vocals.wav: can convert to 1 or 2 channels, asked for 6"):
            get()
    # a mixture at another rate is still refused when the references are read
    stems = _stems(0.5)
    root = _folder(tmp_path / "c", stems)
    sf.write(str(root / "song" / "mixture.wav"), stems["vocals"].T, 22050, subtype="FLOAT")
    t = D.load("folder", root=root, stems=list(STEMS))["song"]
    with pytest.raises(DatasetError, match="is 44100 Hz but the other files are 22050 Hz"):
        _ = t.references
