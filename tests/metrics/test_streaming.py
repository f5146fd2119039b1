"""Block-wise metrics: lazy sources (stemlab.metrics.sources), the SDR family
against the whole-array formulas it replaced, BSSEval over shared groups,
scoring from files on disk, and memory that does not grow with length."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from stemlab import Stems
from stemlab.errors import InputError
from stemlab.metrics import bsseval as B
from stemlab.metrics import evaluate
from stemlab.metrics import registry as R
from stemlab.metrics import simple as S
from stemlab.metrics import sources as src
from stemlab.metrics.evaluation import quantize

sf = pytest.importorskip("soundfile")


def _music(rng: np.random.Generator, n_src: int, ch: int, n: int, sr: int = 8000) -> np.ndarray:
    """float32 (n_src, ch, n): tones + coloured noise, a silent stretch each."""
    t = np.arange(n) / sr
    out = np.zeros((n_src, ch, n))
    for j in range(n_src):
        for c in range(ch):
            noise = np.convolve(rng.standard_normal(n), np.hanning(9), mode="same")
            out[j, c] = 0.2 * np.sin(2 * np.pi * 110 * (j + 1) * (1 + 0.01 * c) * t) + 0.05 * noise
        out[j, :, (j + 1) * n // 10 : (j + 1) * n // 10 + n // 50] = 0.0
    return out.astype(np.float32)


# --------------------------------------------------------- today's formulas
# the whole-array implementations the block-wise ones replaced (stemlab
# before the streaming change), kept as references

def _old_usdr(ref, est, eps=1e-8):
    num, den = [], []
    for j in range(ref.shape[0]):
        s = ref[j].astype(np.float64).ravel()
        e = est[j].astype(np.float64).ravel()
        np.subtract(s, e, out=e)
        num.append(np.einsum("i,i->", s, s) + eps)
        den.append(np.einsum("i,i->", e, e) + eps)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.array(num) / np.array(den))


def _old_usdr_mdx(ref, est, delta=1e-7, dtype=np.float32):
    dt = np.dtype(dtype)
    s = ref.astype(dt, copy=False)
    e = est.astype(dt, copy=False)
    num = np.sum(np.square(s), axis=(1, 2)) + dt.type(delta)
    den = np.sum(np.square(s - e), axis=(1, 2)) + dt.type(delta)
    with np.errstate(divide="ignore"):
        return (10 * np.log10(num / den)).astype(np.float64)


def _dot(a, b):
    return np.einsum("ij,ij->i", a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1))


def _old_si_sdr(ref, est, eps=1e-8, zero_mean=False):
    s = ref.astype(np.float64)
    e = est.astype(np.float64)
    if zero_mean:
        s = s - s.mean(axis=2, keepdims=True)
        e = e - e.mean(axis=2, keepdims=True)
    n = s[0].size
    alpha = (_dot(e, s) + n * eps) / (_dot(s, s) + n * eps)
    target = s * alpha[:, None, None]
    err = target - e
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(_dot(target, target) / (_dot(err, err) + eps) + eps)


def _old_sdr_gain(ref, est, eps=1e-8):
    s = ref.astype(np.float64, copy=False)
    e = est.astype(np.float64, copy=False)
    ee = _dot(e, e)
    g = np.divide(_dot(e, s), ee, out=np.zeros_like(ee), where=ee > 0)
    err = s - e * g[:, None, None]
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10((_dot(s, s) + eps) / (_dot(err, err) + eps)), g


def _sdr_cases(rng):
    """(name, references, estimates): longer than two 2¹⁸-sample blocks."""
    n = 2 * src.BLOCK + 12345
    ref = _music(rng, 3, 2, n)
    noise = rng.standard_normal(ref.shape).astype(np.float32)
    yield "ordinary", ref, (0.8 * ref + 0.05 * np.roll(ref, 1, axis=0) + 0.02 * noise).astype(np.float32)
    # SI-SDR ≈ 78 dB and a scaled copy: the error energies cancel in the sums
    yield "near_perfect", ref, (0.5 * ref + 1e-5 * noise).astype(np.float32)
    silent = ref.copy()
    silent[1] = 0.0
    yield "silent_reference", silent, (ref + 0.01 * noise).astype(np.float32)
    yield "float64", ref.astype(np.float64), (ref + 0.3 * noise).astype(np.float64)


def test_sdr_family_equals_the_whole_array_formulas():
    rng = np.random.default_rng(0)
    for name, ref, est in _sdr_cases(rng):
        np.testing.assert_allclose(S.usdr(ref, est), _old_usdr(ref, est), rtol=0, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(S.si_sdr(ref, est), _old_si_sdr(ref, est), rtol=0, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(S.si_sdr(ref, est, zero_mean=True), _old_si_sdr(ref, est, zero_mean=True),
                                   rtol=0, atol=1e-9, err_msg=name)
        got, g = S.sdr_gain(ref, est, return_gain=True)
        want, wg = _old_sdr_gain(ref, est)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(g, wg, rtol=1e-12, err_msg=name)
        # usdr_mdx: float32 arithmetic, numpy's pairwise sums reproduced bit for bit
        assert (S.usdr_mdx(ref, est) == _old_usdr_mdx(ref, est)).all(), name
        assert (S.usdr_mdx(ref, est, dtype=np.float64) == _old_usdr_mdx(ref, est, dtype=np.float64)).all(), name
        # evaluate()'s shared pass gives the same numbers as the functions
        shared = S.stream_metrics(["usdr", "usdr_mdx", "si_sdr", "sdr_gain"], list(ref), list(est), 8000)
        for m in shared:
            np.testing.assert_allclose(shared[m], R.SIMPLE_METRICS[m](ref, est, 8000), rtol=0, atol=1e-12,
                                       err_msg=(name, m))
    # the near-perfect case really is in the cancelling regime
    ref, est = next((r, e) for n, r, e in _sdr_cases(np.random.default_rng(0)) if n == "near_perfect")
    assert (S.si_sdr(ref, est) > 60).all()


def test_pairwise_sums_reproduce_numpy_for_any_split():
    rng = np.random.default_rng(1)
    for c, n, leaf in ((1, 1000, 256), (2, 12345, 256), (3, 70001, 4096), (2, 7, 256), (2, 300000, 1 << 16)):
        x = rng.standard_normal((c, n)).astype(np.float32)
        y = rng.standard_normal((c, n)).astype(np.float32)
        for dt in (np.dtype(np.float32), np.dtype(np.float64)):
            want = np.sum(np.square(x.astype(dt) - y.astype(dt)))
            assert S._pairwise_sums(x, y, dt, leaf=leaf) == want, (c, n, leaf, dt)
            assert S._pairwise_sums(x, None, dt, leaf=leaf) == np.sum(np.square(x.astype(dt))), (c, n, leaf, dt)


def test_simple_metrics_take_lazy_sources():
    rng = np.random.default_rng(2)
    ref = _music(rng, 2, 2, 30000)
    est = (ref + 0.05 * rng.standard_normal(ref.shape)).astype(np.float32)
    lazy_r = [src.PaddedSource(r, r.shape[1]) for r in ref]
    lazy_e = [src.SumSource([e]) for e in est]
    for name, fn in R.SIMPLE_METRICS.items():
        np.testing.assert_array_equal(fn(lazy_r, lazy_e, 8000), fn(ref, est, 8000), err_msg=name)
    bad = est.copy()
    bad[1, 0, 25000] = np.nan
    with pytest.raises(InputError, match="1 NaN/Inf") as e:
        S.usdr(lazy_r, [src.PaddedSource(b, b.shape[1]) for b in bad])
    assert e.value.details["field"] == "estimates"


# ------------------------------------------------------------- sources

def test_virtual_sources_equal_the_array_operations():
    rng = np.random.default_rng(3)
    parts = [rng.standard_normal((2, 1000)).astype(np.float32) for _ in range(3)]
    acc = src.SumSource(parts)
    want = np.sum([p.astype(np.float64) for p in parts], axis=0)  # today's with_accompaniment
    assert acc.shape == (2, 1000)
    assert (acc[:, :] == want).all() and (acc[:, 123:456] == want[:, 123:456]).all()
    assert (acc[1:2, 10:20] == want[1:2, 10:20]).all() and (src.materialize(acc) == want).all()
    pad = src.PaddedSource(parts[0], 1300)
    assert pad.shape == (2, 1300) and pad[:, 900:1300].dtype == np.float32
    assert (pad[:, 900:1300] == np.pad(parts[0], ((0, 0), (0, 300)))[:, 900:1300]).all()
    short = src.PaddedSource(parts[0], 700)
    assert (src.materialize(short, np.float32) == parts[0][:, :700]).all()
    q = src.QuantizedSource(parts[1] * 0.3, 16)
    assert (q[:, 100:900] == quantize(parts[1] * 0.3, 16)[:, 100:900]).all()
    # read: float64, zero outside the signal
    blk = src.read(parts[2], -5, 10)
    assert blk.dtype == np.float64 and (blk[:, :5] == 0).all() and (blk[:, 5:] == parts[2][:, :10]).all()
    assert (src.read(parts[2], 995, 1003)[:, 5:] == 0).all()
    got = np.concatenate([b.copy() for _, b in src.blocks(acc, block=300)], axis=1)
    assert (got == want).all()
    with pytest.raises(TypeError, match="step 1"):
        acc[:, ::2]
    with pytest.raises(InputError, match="differ in shape"):
        src.SumSource([parts[0], parts[1][:, :10]])


@pytest.mark.parametrize("fmt,subtype,exact", [("WAV", "PCM_16", True), ("FLAC", "PCM_24", True),
                                               ("WAV", "FLOAT", True), ("OGG", "VORBIS", False)])
def test_audio_file_source_reads_what_soundfile_decodes(tmp_path, fmt, subtype, exact):
    rng = np.random.default_rng(4)
    x = (0.4 * rng.standard_normal((3, 44100 + 77))).clip(-1, 1).astype(np.float32)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, x.T, 44100, format=fmt, subtype=subtype)
    whole, sr = sf.read(path, dtype="float32", always_2d=True)
    whole = whole.T
    f = src.AudioFileSource(path)
    assert f.shape == whole.shape and f.sample_rate == sr == 44100 and f.dtype == np.float32
    spans = [(0, 10), (5000, 5000), (30000, 44177), (1234, 40000), (44170, 44177)]
    for a, b in spans:
        blk = f[:, a:b]
        assert blk.shape == (3, b - a) and blk.dtype == np.float32
        if exact:
            assert (blk == whole[:, a:b]).all(), (a, b)
        else:  # lossy: libvorbis's seek-and-decode is sample-accurate to float rounding
            np.testing.assert_allclose(blk, whole[:, a:b], atol=1e-6)
    assert (f[1:2, 100:200] == f[:, 100:200][1:2]).all()
    scaled = src.AudioFileSource(path, scale=0.5)
    assert (scaled[:, 0:500] == f[:, 0:500] * np.float32(0.5)).all()
    again = pickle.loads(pickle.dumps(f))
    assert (again[:, 7:99] == f[:, 7:99]).all()
    f.close()
    assert (f[:, 0:5] == again[:, 0:5]).all()  # reopened on demand
    with pytest.raises(InputError, match="cannot open"):
        src.AudioFileSource(tmp_path / "missing.wav")


def _write_song(root, rng, n=3 * 8000 + 123, sr=8000):
    """References and a noisy, delayed 'separation' as 16-bit WAV/FLAC
    files, and the arrays soundfile decodes from them."""
    refs = _music(rng, 4, 2, n, sr)
    names = ("vocals", "drums", "bass", "other")
    mix = refs.sum(axis=0)
    files, decoded = {"refs": {}, "ests": {}}, {"refs": {}, "ests": {}}
    for j, name in enumerate(names):
        est = 0.8 * np.roll(refs[j], 3, axis=-1) + 0.1 * (mix - refs[j]) + 0.01 * rng.standard_normal(mix.shape)
        for side, x, ext in (("refs", refs[j], "wav"), ("ests", est, "flac")):
            p = root / f"{side}-{name}.{ext}"
            sf.write(p, np.clip(x, -1, 1).T, sr, subtype="PCM_16")
            files[side][name] = p
            decoded[side][name] = sf.read(p, dtype="float32", always_2d=True)[0].T
    acc = 0.9 * (mix - refs[0]) + 0.01 * rng.standard_normal(mix.shape)
    p = root / "ests-accompaniment.flac"
    sf.write(p, np.clip(acc[:, : n - 1000], -1, 1).T, sr, subtype="PCM_16")  # shorter: zero-padded
    files["ests"]["accompaniment"] = p
    decoded["ests"]["accompaniment"] = sf.read(p, dtype="float32", always_2d=True)[0].T
    return files, decoded


def _same(a, b):
    assert [(r["target"], r["metric"], r["aggregation"]) for r in a.rows] == [
        (r["target"], r["metric"], r["aggregation"]) for r in b.rows]
    for x, y in zip(a.rows, b.rows):
        assert x == y or (np.isnan(x["value"]) and np.isnan(y["value"])), (x, y)
    assert len(a.frames) == len(b.frames)
    for x, y in zip(a.frames, b.frames):
        assert x == y or (np.isnan(x["value"]) and np.isnan(y["value"])), (x, y)


def test_scoring_from_files_equals_scoring_the_decoded_arrays(tmp_path):
    rng = np.random.default_rng(5)
    files, decoded = _write_song(tmp_path, rng)
    metrics = ("bsseval_v4", "usdr", "si_sdr", "sdr_gain", "usdr_mdx", "l1_freq")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for bits in (None, 16):
            lazy = evaluate({k: src.AudioFileSource(p) for k, p in files["refs"].items()},
                            {k: src.AudioFileSource(p) for k, p in files["ests"].items()},
                            metrics=metrics, reference_bits=bits)
            arrays = evaluate(decoded["refs"], decoded["ests"], 8000, metrics=metrics, reference_bits=bits)
            _same(lazy, arrays)
            assert lazy.info["bsseval_shared"] and lazy.value("vocals", "sdr_bsseval_v4") > 0
    assert any("zero-padded" in n for n in lazy.notes)


def test_score_stems_takes_a_mapping_of_file_sources(tmp_path):
    from stemlab.metrics.scoring import score_stems
    from stemlab.types import Track

    rng = np.random.default_rng(6)
    files, decoded = _write_song(tmp_path, rng)
    track = Track.from_arrays("song", None, 8000, references=decoded["refs"])
    names = ("vocals", "drums", "bass", "other")
    lazy = {k: src.AudioFileSource(files["ests"][k]) for k in names}
    arrays = Stems({k: decoded["ests"][k] for k in names}, 8000)
    a = score_stems(lazy, track, metrics=("bsseval_v4", "usdr"))
    b = score_stems(arrays, track, metrics=("bsseval_v4", "usdr"))
    assert a["corrections"] == b["corrections"] == {}
    assert a["rows"] == b["rows"] and a["museval"] == b["museval"]
    # a shorter file is aligned (read whole) like Stems of that length would be
    lazy["drums"] = src.PaddedSource(lazy["drums"], 8000 * 2)
    c = score_stems(lazy, track, metrics=("usdr",), alignment={"enabled": False})
    assert [r["target"] for r in c["rows"]] == list(names)


# --------------------------------------------------------------- bsseval

def test_bsseval_takes_sources_and_reads_them_in_blocks():
    rng = np.random.RandomState(7)
    refs = rng.randn(3, 2, 9000)
    ests = 0.7 * np.roll(refs, 2, axis=-1) + 0.2 * refs[::-1] + 0.1 * rng.randn(*refs.shape)
    want = B.bss_eval_v4(refs, ests, 3000, 3000, filters_len=64)
    lazy_e = [src.PaddedSource(e[:, :8500], 9000) for e in ests]  # zero-padded like museval
    got = B.bss_eval_v4(list(refs), [src.SumSource([e[:, :8500]]) for e in ests], 3000, 3000, filters_len=64)
    padded = B.bss_eval_v4(refs, np.pad(ests[:, :, :8500], ((0, 0), (0, 0), (0, 500))), 3000, 3000,
                           filters_len=64)
    for m in ("SDR", "ISR", "SIR", "SAR"):
        np.testing.assert_array_equal(got.metrics()[m], padded.metrics()[m])
        np.testing.assert_array_equal(B.bss_eval_v4(refs, lazy_e, 3000, 3000, filters_len=64).metrics()[m],
                                      padded.metrics()[m])
        assert not np.array_equal(want.metrics()[m], padded.metrics()[m])
    sdr = B.sdr_frames([src.QuantizedSource(r, 16) for r in refs], list(ests), 3000, 3000).sdr
    np.testing.assert_array_equal(sdr, B.sdr_frames(quantize(refs, 16), ests, 3000, 3000).sdr)
    bad = ests.copy()
    bad[2, 1, 8999] = np.inf
    with pytest.raises(InputError, match="NaN/Inf") as e:
        B.bss_eval_v4(refs, list(bad), 3000, 3000, filters_len=64)
    assert e.value.details["field"] == "estimates"


def test_shared_groups_equal_separate_evaluations():
    """{vocals, accompaniment} computed from the main group's correlations and
    spectra (accompaniment = sum of the others) = evaluated on its own."""
    rng = np.random.RandomState(8)
    T = 3 * 4000 + 77
    refs = [rng.randn(2, T) for _ in range(4)]
    for r in refs:
        r[:, 1:] += 0.5 * r[:, :-1]
    ests = [0.8 * np.roll(r, 2, axis=-1) + 0.1 * refs[(j + 1) % 4] + 0.1 * rng.randn(2, T)
            for j, r in enumerate(refs)]
    ests.append(ests[1] + ests[2] + ests[3] + 0.05 * rng.randn(2, T))
    main, pair = B.bss_eval_v4_groups(refs, ests, [([0, 1, 2, 3], [0, 1, 2, 3]), ([0, (1, 2, 3)], [0, 4])],
                                      4000, 4000, filters_len=64)
    acc = np.sum([refs[1], refs[2], refs[3]], axis=0)
    alone = B.bss_eval_v4(np.stack([refs[0], acc]), np.stack([ests[0], ests[4]]), 4000, 4000, filters_len=64)
    first = B.bss_eval_v4(np.stack(refs), np.stack(ests[:4]), 4000, 4000, filters_len=64)
    for m in ("SDR", "ISR", "SIR", "SAR"):
        np.testing.assert_allclose(pair.metrics()[m], alone.metrics()[m], rtol=0, atol=1e-9, err_msg=m)
        np.testing.assert_array_equal(main.metrics()[m], first.metrics()[m])
    np.testing.assert_array_equal(pair.sdr, alone.sdr)  # time-domain terms: the same sums


def test_evaluate_shares_the_accompaniment_group_only_when_it_is_the_sum():
    rng = np.random.RandomState(9)
    T = 2 * 8000 + 300
    names = ("vocals", "drums", "bass", "other")
    refs = {n: rng.randn(2, T).astype(np.float32) for n in names}
    ests = {n: (r + 0.3 * rng.randn(2, T)).astype(np.float32) for n, r in refs.items()}
    ests["accompaniment"] = (ests["drums"] + ests["bass"] + ests["other"]).astype(np.float32)
    shared = evaluate(refs, ests, 8000, metrics=("bsseval_v4",))
    assert shared.info["bsseval_shared"]
    acc = np.sum([refs[n].astype(np.float64) for n in ("drums", "bass", "other")], axis=0)
    given = evaluate({**refs, "accompaniment": acc}, ests, 8000, metrics=("bsseval_v4",))
    assert "bsseval_shared" not in given.info
    for t in ("vocals", "accompaniment", "drums"):
        for m in ("SDR", "ISR", "SIR", "SAR"):
            np.testing.assert_allclose(shared.framewise[t][m], given.framewise[t][m], rtol=0, atol=1e-9)


# ---------------------------------------------------------------- memory

def test_evaluate_memory_does_not_grow_with_the_length():
    """tracemalloc sees numpy's allocations: the peak of evaluate() on a 4-min
    track is that of a 1-min track (buffers of a few blocks and frames), and
    far below the size of its inputs."""
    import tracemalloc

    sr = 44100
    rng = np.random.default_rng(10)
    peaks = {}
    for seconds in (60, 240):
        n = seconds * sr
        base = rng.standard_normal((2, n), dtype=np.float32) * np.float32(0.1)
        refs = {"vocals": base, "accompaniment": np.roll(base, 7, axis=1) * np.float32(0.5)}
        ests = {k: v + np.float32(0.01) * rng.standard_normal(v.shape, dtype=np.float32) for k, v in refs.items()}
        inputs = sum(a.nbytes for a in (*refs.values(), *ests.values()))
        tracemalloc.start()
        try:
            ev = evaluate(refs, ests, sr, metrics=("bsseval_v4", "usdr", "si_sdr"))
            peaks[seconds] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len([f for f in ev.frames if f["target"] == "vocals" and f["metric"] == "SDR"]) == seconds
        del refs, ests, base
    ratio = peaks[240] / peaks[60]
    print(f"traced peak: 60 s {peaks[60] / 1e6:.1f} MB, 240 s {peaks[240] / 1e6:.1f} MB (ratio {ratio:.3f}); "
          f"240-s inputs {inputs / 1e6:.0f} MB")
    assert ratio <= 1.3
    assert peaks[240] < inputs / 2
