"""Alignment of service outputs: known delays, gains, rates, channel
layouts, lengths and MP3 round trips are undone; unalignable output is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stemlab import audio
from stemlab.errors import InputError, ProviderOutputError
from stemlab.metrics.align import align, find_offset
from stemlab.metrics.simple import usdr
from stemlab.types import Stems

SR = 44100
NAMES = ("vocals", "drums", "bass")


def _lowpass(x: np.ndarray, sr: int = SR, hz: float = 15000.0) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    return sosfiltfilt(butter(8, hz, fs=sr, output="sos"), x, axis=-1)


def _sources(seed=0, seconds=3.0, sr=SR, pitch=1.0) -> np.ndarray:
    """Three stereo music-like sources (noise-rich, so the correlation has
    one clear peak): a vibrato tone with breath noise, noise bursts, a bass.
    Noise is low-passed at 15 kHz like real recordings, so resampling and
    MP3's ~19 kHz low-pass leave the content intact."""
    rng = np.random.default_rng(seed)

    def noise(*shape):
        return _lowpass(rng.standard_normal(shape), sr)

    n = int(seconds * sr)
    t = np.arange(n) / sr
    f = 330 * pitch
    voc = 0.15 * np.sin(2 * np.pi * f * t + 2 * np.sin(2 * np.pi * 5 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.4 * t))
    voc = np.stack([voc + 0.02 * noise(n), 0.8 * voc + 0.02 * noise(n)])
    env = np.exp(-((t * 4 * pitch) % 1.0) * 12)
    drums = 0.3 * env * noise(2, n)
    bass = 0.2 * np.sin(2 * np.pi * 55 * pitch * t * (1 + 0.5 * (t % 1 > 0.5)))
    bass = np.stack([bass, bass]) + 0.01 * noise(2, n)
    # band-limit everything: the envelopes' and the bass's jumps are clicks
    return _lowpass(np.stack([voc, drums, bass]), sr).astype(np.float32)


@pytest.fixture(scope="module")
def case():
    """(references, mixture, estimates): the estimates are an imperfect
    separation (each reference plus its own error at ~15 dB)."""
    refs = _sources()
    rng = np.random.default_rng(1)
    err = _lowpass(rng.standard_normal(refs.shape))
    err /= np.std(err)
    est = refs + 0.2 * np.std(refs, axis=(1, 2), keepdims=True) * err
    return refs, refs.sum(axis=0), est.astype(np.float32)


def _stems(arr: np.ndarray, sr: int = SR) -> Stems:
    return Stems.from_array(arr, NAMES, sr)


def _late(x: np.ndarray, d: int, keep_length: bool = True) -> np.ndarray:
    """``x`` delayed by d samples (d < 0: early), as a service would return it."""
    if d >= 0:
        y = np.concatenate([np.zeros(x.shape[:-1] + (d,), x.dtype), x], axis=-1)
    else:
        y = x[..., -d:]
    return y[..., : x.shape[-1]] if keep_length and y.shape[-1] > x.shape[-1] else y


def _score(refs, stems: Stems) -> np.ndarray:
    return usdr(refs, stems.to_array(NAMES), SR)


def _lost(x: np.ndarray, delay: int, length: int | None = None) -> np.ndarray:
    """The unshifted estimate without the samples a shifted, fixed-length
    output cannot contain (the ``|delay|`` samples pushed out of it): the
    fair "unshifted case" to compare the aligned scores with."""
    y = x.copy()
    if delay > 0:
        y[..., y.shape[-1] - delay :] = 0.0
    elif delay < 0:
        y[..., :-delay] = 0.0
    return y


# ------------------------------------------------------------------ offset

def test_find_offset_matches_brute_force():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 700))
    y = np.concatenate([np.zeros((2, 13)), x[:, :650]], axis=1) + 0.3 * rng.standard_normal((2, 663))
    d, rho = find_offset(y, x, 40)
    norm = math.sqrt(np.sum(x * x) * np.sum(y * y))
    brute = {}
    for k in range(-40, 41):
        # c[k] = Σ_m y[m + k]·x[m] over the overlap
        lo, hi = max(0, -k), min(x.shape[1], y.shape[1] - k)
        brute[k] = float(np.sum(y[:, lo + k : hi + k] * x[:, lo:hi])) / norm
    best = max(brute, key=brute.get)
    assert d == best == 13
    assert abs(rho - brute[best]) < 1e-12
    assert find_offset(y, np.zeros_like(x), 40) == (0, 0.0)


@pytest.mark.parametrize("delay", [0, 1, 37, -211, 4410, -9000])
def test_known_delay_recovered_exactly(case, delay):
    refs, mix, est = case
    shifted = _late(est, delay)
    aligned, corr = align(_stems(shifted), mix, SR)
    assert corr["offset_samples"] == delay
    assert corr["offset_ms"] == pytest.approx(1000 * delay / SR)
    assert corr["correlation"] > 0.9
    assert corr["resampled_from"] is None and corr["channel_fix"] is None
    # late: |d| zeros in front are trimmed, |d| padded at the end; early: the
    # output is |d| short and starts |d| samples in, so |d| are padded in front
    assert corr["padded_samples"] == abs(delay)
    assert corr["trimmed_samples"] == max(delay, 0)
    assert corr["gain_db"] == 0.0
    assert aligned.num_samples == mix.shape[1] and aligned.sample_rate == SR
    # the overlapping part is sample-identical to the unshifted estimate
    lo, hi = max(0, -delay), mix.shape[1] - max(0, delay)
    np.testing.assert_array_equal(aligned.to_array(NAMES)[..., lo:hi], est[..., lo:hi])
    np.testing.assert_array_equal(aligned.to_array(NAMES), _lost(est, delay))


def test_delay_and_longer_output(case):
    """A late output that keeps all its samples (longer than the mixture)."""
    refs, mix, est = case
    shifted = _late(est, 1500, keep_length=False)
    aligned, corr = align(_stems(shifted), mix, SR)
    assert corr["offset_samples"] == 1500 and corr["input_samples"] == mix.shape[1] + 1500
    assert corr["trimmed_samples"] == 1500 and corr["padded_samples"] == 0
    np.testing.assert_array_equal(aligned.to_array(NAMES), est)


def test_gain_compensation(case):
    refs, mix, est = case
    # an exact copy at half level: the gain is exactly +6.02 dB
    quiet = _late(refs * 0.5, 250)
    aligned, corr = align(_stems(quiet), mix, SR, gain=True)
    assert corr["offset_samples"] == 250
    assert abs(corr["gain_db"] - 20 * math.log10(2)) < 1e-4
    assert corr["gain_db"] == corr["ls_gain_db"]
    assert np.all(_score(_lost(refs, 250), aligned) > 60)  # all but the lost 250 samples
    # a noisy estimate: the least-squares gain of the aligned sum onto the mixture
    quiet = _late(est * 0.5, 250)
    aligned, corr = align(_stems(quiet), mix, SR, gain=True)
    y = 0.5 * _lost(est, 250).sum(axis=0).astype(np.float64)
    g = float(np.sum(y * mix)) / float(np.sum(y * y))
    assert corr["gain_db"] == pytest.approx(20 * math.log10(g), abs=1e-6)
    np.testing.assert_allclose(aligned.to_array(NAMES), 0.5 * g * _lost(est, 250), rtol=1e-5, atol=1e-7)
    # without gain the level is left alone but the measured gain is reported
    plain, corr2 = align(_stems(quiet), mix, SR)
    assert corr2["gain_db"] == 0.0 and corr2["ls_gain_db"] == pytest.approx(corr["ls_gain_db"])
    np.testing.assert_array_equal(plain.to_array(NAMES), 0.5 * _lost(est, 250))


@pytest.mark.parametrize("delay_48k", [0, 480, -960])
def test_48k_output_resampled(case, delay_48k):
    refs, mix, est = case
    est48 = np.stack([audio.resample(e, SR, 48000) for e in est])
    shifted = _late(est48, delay_48k)
    aligned, corr = align(_stems(shifted, 48000), mix, SR)
    assert corr["resampled_from"] == 48000
    assert corr["offset_samples"] == round(delay_48k * SR / 48000)  # 10 ms steps: exact
    assert aligned.sample_rate == SR and aligned.num_samples == mix.shape[1]
    assert np.abs(_score(refs, aligned) - _score(refs, _stems(_lost(est, round(delay_48k * SR / 48000))))).max() < 0.1


def test_mono_output_on_stereo_mixture(case):
    refs, mix, est = case
    mono = est.mean(axis=1, keepdims=True)
    aligned, corr = align(_stems(_late(mono, -333)), mix, SR)
    assert corr["channel_fix"] == "mono->stereo" and corr["offset_samples"] == -333
    dual = np.repeat(mono, 2, axis=1)
    assert np.abs(_score(refs, aligned) - _score(refs, _stems(_lost(dual, -333)))).max() < 0.1
    # and a stereo output on a mono mixture is averaged
    refs_m = refs.mean(axis=1, keepdims=True)
    aligned_m, corr_m = align(_stems(_late(est, 77)), refs_m.sum(axis=0), SR)
    assert corr_m["channel_fix"] == "stereo->mono" and corr_m["offset_samples"] == 77
    assert aligned_m.num_channels == 1


def test_padding_and_truncation(case):
    refs, mix, est = case
    padded = np.concatenate([est, np.zeros(est.shape[:-1] + (2000,), np.float32)], axis=-1)
    aligned, corr = align(_stems(padded), mix, SR)
    assert corr["offset_samples"] == 0 and corr["trimmed_samples"] == 2000 and corr["padded_samples"] == 0
    np.testing.assert_array_equal(aligned.to_array(NAMES), est)
    short = est[..., : est.shape[-1] - SR // 2]
    aligned, corr = align(_stems(short), mix, SR)
    assert corr["offset_samples"] == 0 and corr["padded_samples"] == SR // 2 and corr["trimmed_samples"] == 0
    assert 0.8 < corr["correlation"] < 0.95  # shares ~5/6 of the energy
    cut = est.copy()
    cut[..., -(SR // 2) :] = 0.0
    assert np.abs(_score(refs, aligned) - _score(refs, _stems(cut))).max() < 0.1


def _strip_lame_tag(mp3: bytes) -> bytes:
    """Drop the first MPEG frame (the Xing/LAME "Info" frame holding the
    encoder delay/padding), as a stream re-muxer would: the decoder then
    outputs LAME's 576-sample encoder delay plus the decoder's 529 samples."""
    p = 0
    if mp3[:3] == b"ID3":
        p = 10 + ((mp3[6] << 21) | (mp3[7] << 14) | (mp3[8] << 7) | mp3[9])
    h = int.from_bytes(mp3[p : p + 4], "big")
    assert h >> 21 == 0x7FF, "no MPEG frame sync"
    assert (h >> 17) & 3 == 1 and (h >> 19) & 3 == 3, "expected MPEG-1 Layer III"
    bitrate = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320][(h >> 12) & 15] * 1000
    rate = [44100, 48000, 32000][(h >> 10) & 3]
    length = 144 * bitrate // rate + ((h >> 9) & 1)
    assert b"Info" in mp3[p : p + 64] or b"Xing" in mp3[p : p + 64]
    return mp3[:p] + mp3[p + length :]


LAME_DELAY = 576 + 529  # encoder delay + mp3 decoder delay, samples at the MP3's rate


@pytest.mark.parametrize("rate", [44100, 48000])
def test_mp3_round_trip(case, rate):
    refs, mix, est = case
    src = est if rate == SR else np.stack([audio.resample(e, SR, rate) for e in est])
    t_r = src.shape[-1]

    def round_trip(x, strip):
        b = audio.encode_bytes(x, rate, "mp3", bitrate=192_000)
        y, sr = audio.decode(_strip_lame_tag(b) if strip else b)
        assert sr == rate
        return y

    def at_ref_rate(x):
        """An output placed by hand at a known offset, then resampled."""
        x = audio.fit_length(x, t_r)
        if rate != SR:
            x = np.stack([audio.resample(v, rate, SR) for v in x])
        return _stems(audio.fit_length(x, mix.shape[1]))

    # with the LAME tag the decoder removes the delay itself: offset 0
    tagged = np.stack([round_trip(x, False) for x in src])
    a_tag, c_tag = align(_stems(tagged, rate), mix, SR)
    assert c_tag["offset_samples"] == 0 and c_tag["correlation"] > 0.95
    # without it LAME's 576 + 529 = 1105-sample codec delay appears, found
    # exactly at the output's own rate (1015.2 samples at 44.1 kHz: ±1)
    raw = np.stack([round_trip(x, True) for x in src])
    a_raw, c_raw = align(_stems(raw, rate), mix, SR)
    assert c_raw.get("offset_samples_native", c_raw["offset_samples"]) == LAME_DELAY
    assert abs(c_raw["offset_samples"] - LAME_DELAY * SR / rate) <= 0.5
    # scores equal those of the decodes placed by hand at the known offsets
    s_tag, s_raw = _score(refs, a_tag), _score(refs, a_raw)
    np.testing.assert_allclose(s_tag, _score(refs, at_ref_rate(tagged)), atol=1e-6)
    np.testing.assert_allclose(s_raw, _score(refs, at_ref_rate(raw[..., LAME_DELAY:])), atol=1e-6)
    assert np.abs(s_raw - s_tag).max() < 0.01
    # (MP3 at 192 kbps itself costs this ~14 dB separation up to ~4 dB on the
    # noise-like drums: a property of the codec, not of the alignment)


def test_m4a_round_trip(case):
    refs, mix, est = case
    dec = []
    for x in est:
        y, sr = audio.decode(audio.encode_bytes(_late(x, 700, keep_length=False), SR, "m4a"))
        dec.append(y)
    n = min(d.shape[1] for d in dec)
    dec = np.stack([d[:, :n] for d in dec])
    aligned, corr = align(_stems(dec), mix, SR)
    # PyAV drops the AAC priming samples, so only the 700 samples remain
    assert corr["offset_samples"] == 700
    np.testing.assert_array_equal(aligned.to_array(NAMES), audio.fit_length(dec[..., 700:], mix.shape[1]))


# ---------------------------------------------------------------- refusals

def test_uncorrelated_output_refused(case):
    refs, mix, est = case
    other = _sources(seed=99, pitch=1.37)  # another song
    with pytest.raises(ProviderOutputError, match=r"correlation 0\.\d+.*threshold 0\.5") as e:
        align(_stems(other), mix, SR)
    assert e.value.details["correlation"] < 0.5 and e.value.details["threshold"] == 0.5
    with pytest.raises(ProviderOutputError, match="silence"):
        align(_stems(np.zeros_like(est)), mix, SR)
    with pytest.raises(ProviderOutputError, match="polarity inverted"):
        align(_stems(-est), mix, SR)
    # a delay beyond the search range is not found, so it is refused
    with pytest.raises(ProviderOutputError, match="search ±4410"):
        align(_stems(_late(est, SR // 2)), mix, SR, max_shift_ms=100.0)
    # a stricter threshold refuses a truncated copy that the default accepts
    short = est[..., : est.shape[-1] // 2]
    align(_stems(short), mix, SR)
    with pytest.raises(ProviderOutputError, match="threshold 0.9"):
        align(_stems(short), mix, SR, min_correlation=0.9)


def test_bad_arguments(case):
    refs, mix, est = case
    with pytest.raises(InputError) as e:
        align(_stems(est), mix, 0)
    assert e.value.details["field"] == "sample_rate"
    bad = mix.copy()
    bad[0, 10] = np.nan
    with pytest.raises(InputError) as e:
        align(_stems(est), bad, SR)
    assert e.value.details["field"] == "mixture"
    with pytest.raises(InputError) as e:
        align(est, mix, SR)  # type: ignore[arg-type]
    assert e.value.details["field"] == "estimates"
    with pytest.raises(InputError) as e:
        align(_stems(est), mix, SR, max_shift_ms=-1)
    assert e.value.details["field"] == "max_shift_ms"
    with pytest.raises(ProviderOutputError, match="channels"):
        align(Stems({"a": np.zeros((4, 100), np.float32) + 0.1}, SR), mix, SR)
