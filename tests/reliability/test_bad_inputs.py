"""One table of bad inputs: each must fail with a clear StemlabError subclass
whose message names the file or field and says what was expected — never a
bare decoder/OS exception — and must not disturb anything already computed.

(Conversions that are policy, not errors — mono → dual mono, resampling of
8 kHz/192 kHz input — are tested in test_audio.py; here the same inputs hit
the places where they *are* errors.)"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import stemlab.datasets as D
from stemlab import Track, audio
from stemlab.errors import ConfigError, DatasetError, InputError, StemlabError
from stemlab.runs import load_spec

SR = 44100


def _sig(seconds=0.5, ch=2, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(ch)]).astype(np.float32)


def _folder(tmp: Path, files: dict[str, tuple[np.ndarray, int] | bytes]) -> Path:
    root = tmp / "ds"
    song = root / "song"
    song.mkdir(parents=True)
    for name, v in files.items():
        if isinstance(v, bytes):
            (song / name).write_bytes(v)
        else:
            audio.encode(song / name, v[0], v[1])
    return root


def _decode(p: Path) -> None:
    audio.decode(p)


def case_corrupt(tmp):
    p = tmp / "corrupt.flac"
    good = audio.encode_bytes(_sig(), SR, "flac")
    p.write_bytes(good[:200] + bytes(range(256)) * 40)
    _decode(p)


def case_empty(tmp):
    p = tmp / "empty.mp3"
    p.write_bytes(b"")
    _decode(p)


def case_truncated(tmp):
    p = tmp / "cut.wav"
    p.write_bytes(audio.encode_bytes(_sig(2.0), SR, "wav")[:30000])
    _decode(p)


def case_unsupported_codec(tmp):
    p = tmp / "image.wav"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    _decode(p)


def case_surround_51(tmp):
    p = tmp / "surround.wav"
    audio.encode(p, np.tile(_sig(0.2, 1), (6, 1)), SR)
    x, _ = audio.decode(p)
    audio.to_channels(x, 2, name=str(p))


def case_mono_for_multistream_stem(tmp):
    # a MUSDB-style stem file with mono streams and one stereo: layouts disagree
    p = tmp / "bad.stem.mp4"
    audio.encode_multistream(p, [_sig(0.3, 2)] + [_sig(0.3, 1)] * 4, SR, bitrate=64000)
    root = tmp / "m"
    (root / "test").mkdir(parents=True)
    os.replace(p, root / "test" / "bad.stem.mp4")
    t = D.load("musdb18", root=root)["bad"]
    _ = t.references  # stems decode, but Stems refuses mixed channel counts


def case_8khz_in_44k_dataset(tmp):
    root = _folder(tmp, {"mixture.wav": (_sig(0.5, 2, 8000), 8000), "vocals.wav": (_sig(0.5, 2, 8000), 8000)})
    ds = D.load("folder", root=root, stems=["vocals"])
    ds.card = D.card("musdb18hq")
    r = ds.validate()
    if not r.ok:
        raise DatasetError(r.format())


def case_192khz_stems_mismatch(tmp):
    root = _folder(tmp, {"mixture.wav": (_sig(0.5, 2, 192000), 192000), "vocals.wav": (_sig(0.5, 2, SR), SR)})
    _ = D.load("folder", root=root, stems=["vocals"])["song"].references


def case_nan_samples(tmp):
    x = _sig()
    x[1, 100] = np.nan
    _ = Track.from_arrays("nan-track", x, SR).mixture
    audio.check_audio(x, "nan-track mixture")


def case_inf_encode(tmp):
    x = _sig()
    x[0, 5] = np.inf
    audio.encode(tmp / "inf.wav", x, SR)


def case_silence_zero_length(tmp):
    audio.check_audio(np.zeros((2, 0), np.float32), "silent-input")


def case_zero_length_file(tmp):
    p = tmp / "zero.wav"
    p.write_bytes(audio.encode_bytes(np.zeros((2, 1), np.float32), SR, "wav")[:44])
    _decode(p)


def case_three_hour_file(tmp):
    # a WAV header declaring 3 h of audio is refused before decoding
    p = tmp / "long.wav"
    hdr = bytearray(audio.encode_bytes(np.zeros((2, 4), np.float32), SR, "wav")[:44])
    n = 3 * 3600 * SR * 4
    hdr[40:44] = n.to_bytes(4, "little")
    hdr[4:8] = (n + 36).to_bytes(4, "little")
    with open(p, "wb") as f:  # a sparse file of the full 1.9 GB size
        f.write(bytes(hdr))
        f.truncate(44 + n)
    _decode(p)


def case_mismatched_stem_lengths(tmp):
    root = _folder(tmp, {"vocals.wav": (_sig(0.5), SR), "drums.wav": (_sig(0.7), SR)})
    _ = D.load("folder", root=root)["song"].references


def case_missing_stems(tmp):
    root = tmp / "hq"
    song = root / "test" / "s"
    song.mkdir(parents=True)
    for n in ("mixture", "vocals", "drums"):
        audio.encode(song / f"{n}.wav", _sig(0.3), SR)
    D.load("musdb18hq", root=root, subset="test")["s"]


def case_unknown_provider(tmp):
    load_spec({"datasets": ["demo"], "providers": ["nosuch:model"]})


def case_bad_params(tmp):
    from stemlab.providers import create
    from stemlab.providers.base import Param, Provider

    class P(Provider):
        family = "t_badparam"
        params_schema = (Param("shifts", int, 1, min=0),)

        @property
        def stems(self):
            return ("vocals",)

    from stemlab.providers import register

    register(P)
    create("t_badparam?shifts=-2")


def case_bad_spec_types(tmp):
    load_spec({"datasets": "demo", "providers": "demucs", "metrics": 5, "concurrency": []})


def case_budget_negative(tmp):
    load_spec({"datasets": ["demo"], "providers": [], "budget": {"usd": -1}})


def case_unreadable_dir(tmp):
    d = tmp / "locked"
    d.mkdir()
    os.chmod(d, 0)
    try:
        if os.access(d, os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        D.load("folder", root=d)
    finally:
        os.chmod(d, 0o755)


def case_root_is_file(tmp):
    f = tmp / "songs.zip"
    f.write_bytes(b"PK\x03\x04")
    D.load("folder", root=f)


def case_non_utf8_name(tmp):
    raw = os.fsencode(str(tmp)) + b"/bad\xff\xfename.wav"
    with open(raw, "wb") as f:
        f.write(b"not audio at all")
    _decode(Path(os.fsdecode(raw)))


def case_missing_root(tmp):
    D.load("musdb18hq", root=tmp / "nope")


def case_dataset_unknown(tmp):
    D.load("musdb2099")


def case_spec_file_garbage(tmp):
    p = tmp / "spec.yaml"
    p.write_text("datasets: [demo\nproviders: {")
    load_spec(p)


def case_resample_bad_rate(tmp):
    audio.resample(_sig(), SR, 0)


def case_wrong_shape_array(tmp):
    from stemlab import Stems

    Stems({"vocals": np.zeros((2, 3, 4), np.float32)}, SR)


def case_stream_missing(tmp):
    p = tmp / "one.wav"
    audio.encode(p, _sig(), SR)
    audio.decode(p, stream=4)


CASES: list[tuple[str, Callable, type, tuple[str, ...]]] = [
    ("corrupt file", case_corrupt, InputError, ("corrupt.flac",)),
    ("empty file", case_empty, InputError, ("empty.mp3", "empty")),
    ("truncated file", case_truncated, InputError, ("cut.wav", "truncated")),
    ("unsupported codec", case_unsupported_codec, InputError, ("image.wav", "contains no audio stream")),
    ("5.1 audio", case_surround_51, InputError, ("surround.wav", "6 channels", "downmix")),
    ("mono/stereo streams mixed", case_mono_for_multistream_stem, DatasetError, ("bad.stem.mp4", "channel")),
    ("8 kHz in a 44.1 kHz dataset", case_8khz_in_44k_dataset, DatasetError, ("8000 Hz", "expected 44100 Hz")),
    ("192 kHz mixture vs 44.1 kHz stem", case_192khz_stems_mismatch, DatasetError, ("vocals.wav", "Hz", "resample")),
    ("NaN samples", case_nan_samples, InputError, ("nan-track", "NaN/Inf")),
    ("Inf samples on encode", case_inf_encode, InputError, ("NaN/Inf",)),
    ("silence / 0 samples array", case_silence_zero_length, InputError, ("silent-input", "0 samples")),
    ("0-length file", case_zero_length_file, InputError, ("zero.wav",)),
    ("3-hour file", case_three_hour_file, InputError, ("long.wav", "180.0 min", "limit")),
    ("mismatched stem lengths", case_mismatched_stem_lengths, DatasetError, ("different lengths",)),
    ("missing stems", case_missing_stems, DatasetError, ("missing stem file(s)", "bass", "other")),
    ("unknown provider", case_unknown_provider, ConfigError, ("providers[0]", "unknown provider 'nosuch'")),
    ("bad params", case_bad_params, ConfigError, ("t_badparam.params.shifts", "expected int ≥ 0", "-2")),
    (
        "bad spec types",
        case_bad_spec_types,
        ConfigError,
        ("metrics: expected a non-empty list", "concurrency: expected a mapping"),
    ),
    ("budget below 0", case_budget_negative, ConfigError, ("budget.usd: expected a number ≥ 0",)),
    ("unreadable dir", case_unreadable_dir, DatasetError, ("locked", "not readable")),
    ("dataset root is a file", case_root_is_file, DatasetError, ("songs.zip", "is not a directory")),
    ("non-UTF-8 file name", case_non_utf8_name, InputError, ("bad", "name.wav")),
    ("missing dataset root", case_missing_root, DatasetError, ("does not exist",)),
    ("unknown dataset", case_dataset_unknown, DatasetError, ("unknown dataset 'musdb2099'",)),
    ("unparsable spec file", case_spec_file_garbage, ConfigError, ("spec.yaml", "cannot parse")),
    ("resample to 0 Hz", case_resample_bad_rate, InputError, ("sample rates must be positive",)),
    ("wrong array shape", case_wrong_shape_array, InputError, ("expected audio shaped (channels, samples)",)),
    ("stream index out of range", case_stream_missing, InputError, ("one.wav", "stream 4 requested")),
]


@pytest.mark.parametrize("label,fn,exc,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input_table(label, fn, exc, needles, tmp_path):
    with pytest.raises(StemlabError) as ei:
        fn(tmp_path)
    err = ei.value
    assert isinstance(err, exc), f"{label}: got {type(err).__name__}: {err}"
    msg = str(err)
    for n in needles:
        assert n in msg, f"{label}: {n!r} not in {msg!r}"


def test_table_size():
    assert len(CASES) >= 25
