"""One musdb accompaniment (stemlab.types.accompaniment): every place that
computes it gives the numbers its former implementation gave.

The three former implementations are kept here verbatim (as of commit
26180d3) and compared with their call sites now: ``Stems.with_accompaniment``,
the local providers' ``_common.with_accompaniment`` (in place) and the
metrics' lazy ``evaluation.with_accompaniment`` (a float64 SumSource)."""

from __future__ import annotations

import numpy as np
import pytest

from stemlab.metrics import evaluate
from stemlab.metrics import evaluation as EV
from stemlab.metrics import sources as S
from stemlab.providers.local import _common
from stemlab.types import (
    ACCOMPANIMENT,
    Stems,
    accompaniment,
    accompaniment_parts,
    sum_stems,
)

SR = 8000


# ------------------------------------------------------ former implementations

def _old_stems_sum(stems: Stems, names, block: int = 1 << 16) -> np.ndarray:
    out = np.empty((stems.num_channels, stems.num_samples), dtype=np.float32)
    for a in range(0, stems.num_samples, block):
        acc = np.zeros((stems.num_channels, min(block, stems.num_samples - a)), dtype=np.float64)
        for n in names:
            acc += stems[n][:, a : a + block]
        out[:, a : a + block] = acc
    return out


def _old_stems_with_accompaniment(stems: Stems, vocals: str = "vocals") -> Stems:
    if "accompaniment" in stems or vocals not in stems:
        return stems
    rest = [n for n in stems.names if n != vocals]
    if not rest:
        return stems
    audio = dict(stems.audio)
    audio["accompaniment"] = _old_stems_sum(stems, rest)
    return Stems(audio, stems.sample_rate)


def _old_common_with_accompaniment(stems: dict) -> dict:
    if "vocals" in stems and "accompaniment" not in stems:
        rest = [v for k, v in stems.items() if k != "vocals"]
        if rest:
            first = np.asarray(rest[0])
            acc = np.empty(first.shape, dtype=np.float32)
            n = first.shape[-1]
            step = (1 << 18) // 4
            for s in range(0, max(n, 1), step):
                part = np.zeros(first[..., s : s + step].shape, dtype=np.float64)
                for r in rest:
                    part += r[..., s : s + step]
                acc[..., s : s + step] = part
            stems["accompaniment"] = acc
    return stems


def _old_metrics_with_accompaniment(stems, vocals: str = "vocals") -> dict:
    out = dict(stems)
    if "accompaniment" in out or vocals not in out:
        return out
    rest = [n for n in out if n not in (vocals, "linear_mix", "mixture")]
    if rest:
        out["accompaniment"] = S.SumSource([out[n] for n in rest])
    return out


# ------------------------------------------------------------------- inputs

def _stems(seed: int, names=("vocals", "drums", "bass", "other"), n: int = 150_001, dtype=np.float32) -> dict:
    """Long enough for several 2¹⁶-sample blocks; values whose float64 sum
    rounds differently from a float32 sum."""
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal((2, n)) * 10.0 ** rng.uniform(-3, 0)).astype(dtype) for k in names}


CASES = {
    "musdb": ("vocals", "drums", "bass", "other"),
    "vocals first or last": ("drums", "bass", "other", "vocals"),
    "two stems": ("vocals", "other"),
    "vocals only": ("vocals",),
    "no vocals": ("drums", "bass"),
    "accompaniment present": ("vocals", "accompaniment", "drums"),
}


@pytest.mark.parametrize("names", CASES.values(), ids=CASES.keys())
def test_stems_with_accompaniment_as_before(names) -> None:
    st = Stems(_stems(1, names), SR)
    new, old = st.with_accompaniment(), _old_stems_with_accompaniment(st)
    assert new.names == old.names
    for n in new.names:
        np.testing.assert_array_equal(new[n], old[n])
        assert new[n].dtype == np.float32
    assert (new is st) == (old is st)
    np.testing.assert_array_equal(st.sum(), _old_stems_sum(st, st.names))
    np.testing.assert_array_equal(st.sum(list(names)[:1]), _old_stems_sum(st, list(names)[:1]))


@pytest.mark.parametrize("names", CASES.values(), ids=CASES.keys())
def test_providers_with_accompaniment_as_before(names) -> None:
    stems = _stems(2, names)
    got = dict(stems)
    out = _common.with_accompaniment(got)
    want = _old_common_with_accompaniment(dict(stems))
    assert out is got  # in place, as the oracle provider relies on
    assert list(got) == list(want)
    for n, a in got.items():
        np.testing.assert_array_equal(a, want[n])
        assert a.dtype == want[n].dtype
    # the baselines' nominal stem list: (1, 1) placeholders
    assert tuple(_common.with_accompaniment({n: np.zeros((1, 1), np.float32) for n in names})) == tuple(
        _old_common_with_accompaniment({n: np.zeros((1, 1), np.float32) for n in names}))


@pytest.mark.parametrize("names", CASES.values(), ids=CASES.keys())
def test_metrics_lazy_accompaniment_as_before(names) -> None:
    stems = _stems(3, names)
    got, want = EV.with_accompaniment(stems), _old_metrics_with_accompaniment(stems)
    assert list(got) == list(want)
    if isinstance(want.get(ACCOMPANIMENT), S.SumSource):
        g, w = got[ACCOMPANIMENT], want[ACCOMPANIMENT]
        assert isinstance(g, S.SumSource) and all(a is b for a, b in zip(g.parts, w.parts, strict=True))
        np.testing.assert_array_equal(S.materialize(g, np.float64), S.materialize(w, np.float64))


def test_metrics_lazy_accompaniment_skips_mixtures() -> None:
    stems = _stems(4, ("vocals", "drums", "linear_mix", "bass", "mixture"))
    got, want = EV.with_accompaniment(stems), _old_metrics_with_accompaniment(stems)
    assert [id(p) for p in got[ACCOMPANIMENT].parts] == [id(p) for p in want[ACCOMPANIMENT].parts] == [
        id(stems["drums"]), id(stems["bass"])]


def test_one_definition_everywhere() -> None:
    """The three call sites agree: the float32 of the lazy float64 sum is the
    materialised accompaniment, bit for bit; mixtures are never summed."""
    stems = _stems(5, ("vocals", "drums", "bass", "other", "linear_mix"))
    assert accompaniment_parts(stems) == ("drums", "bass", "other")
    acc = accompaniment(stems)
    assert acc is not None and acc.dtype == np.float32
    lazy = S.materialize(EV.with_accompaniment(stems)[ACCOMPANIMENT], np.float64).astype(np.float32)
    np.testing.assert_array_equal(acc, lazy)
    np.testing.assert_array_equal(acc, Stems(stems, SR).with_accompaniment()[ACCOMPANIMENT])
    np.testing.assert_array_equal(acc, _common.with_accompaniment(dict(stems))[ACCOMPANIMENT])
    exact = np.sum([stems[n].astype(np.float64) for n in ("drums", "bass", "other")], axis=0)
    np.testing.assert_array_equal(acc, exact.astype(np.float32))
    assert not np.array_equal(acc, stems["drums"] + stems["bass"] + stems["other"])  # not a float32 sum
    np.testing.assert_array_equal(sum_stems([stems["drums"]], block=1000), stems["drums"])
    assert accompaniment({"vocals": stems["vocals"]}) is None
    assert accompaniment({"drums": stems["drums"]}) is None
    assert accompaniment_parts(["vocals", "accompaniment", "drums"]) == ()


def test_scores_with_derived_accompaniment_as_before() -> None:
    """evaluate() derives the reference (and estimate) accompaniment the same
    way: its rows equal those of the former lazy sum passed explicitly."""
    refs = _stems(6, n=3 * SR + 7)
    rng = np.random.default_rng(7)
    ests = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in refs.items()}
    targets = ["vocals", "drums", "bass", "other", "accompaniment"]
    kw = {"metrics": ("bsseval_v4", "usdr"), "targets": targets, "filters_len": 64}
    new = evaluate(refs, ests, SR, **kw)  # type: ignore[arg-type]
    old = evaluate(_old_metrics_with_accompaniment(refs), _old_metrics_with_accompaniment(ests), SR,
                   **kw)  # type: ignore[arg-type]
    assert [(r["target"], r["metric"], r["aggregation"], r["value"]) for r in new.rows] == [
        (r["target"], r["metric"], r["aggregation"], r["value"]) for r in old.rows]
    assert new.info.get("bsseval_shared") is True  # museval's pair in one pass: the sum's parts were recognised
