"""Statistics checked against scipy and textbook cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst

from stemlab.errors import InputError
from stemlab.reports import stats


def test_wilcoxon_matches_scipy_and_effect_sizes() -> None:
    rng = np.random.RandomState(3)
    a = rng.normal(6.0, 1.0, 12)
    b = a - rng.normal(0.8, 0.5, 12)
    w = stats.wilcoxon(a, b)
    ref = sst.wilcoxon(a - b)
    assert w["p"] == pytest.approx(ref.pvalue, rel=1e-12) and w["statistic"] == ref.statistic
    d = a - b
    ranks = sst.rankdata(np.abs(d))
    assert w["w_plus"] + w["w_minus"] == pytest.approx(12 * 13 / 2)
    assert w["rank_biserial"] == pytest.approx((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())
    assert w["cohens_dz"] == pytest.approx(d.mean() / d.std(ddof=1))


def test_wilcoxon_exact_known_case() -> None:
    # all 6 differences positive: exact two-sided p = 2 / 2^6 = 0.03125
    w = stats.wilcoxon([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0])
    assert w["p"] == pytest.approx(0.03125)
    assert w["rank_biserial"] == 1.0


def test_refuses_too_few_tracks() -> None:
    with pytest.raises(InputError, match="needs at least 6 paired tracks.*got 5.*0.0625"):
        stats.wilcoxon([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])
    with pytest.raises(InputError, match="at least 3 finite values, got 2"):
        stats.bootstrap_ci([1.0, 2.0])


def test_holm_against_manual() -> None:
    p = [0.01, 0.04, 0.03, 0.20]
    # sorted: .01*4=.04, .03*3=.09, .04*2=.08→max(.09)=.09, .20*1=.20
    assert stats.holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_bootstrap_ci_covers_and_is_deterministic() -> None:
    x = np.arange(20, dtype=float)
    m, lo, hi = stats.bootstrap_ci(x, seed=1)
    assert m == pytest.approx(9.5) and lo < 9.5 < hi
    assert (m, lo, hi) == stats.bootstrap_ci(x, seed=1)
    # with a normal sample the bootstrap CI is close to the t interval
    rng = np.random.RandomState(0)
    y = rng.normal(0, 1, 200)
    _, lo, hi = stats.bootstrap_ci(y, n_boot=20000)
    t_lo, t_hi = sst.t.interval(0.95, len(y) - 1, loc=y.mean(), scale=sst.sem(y))
    assert lo == pytest.approx(t_lo, abs=0.03) and hi == pytest.approx(t_hi, abs=0.03)


def test_compare_providers_table() -> None:
    rng = np.random.RandomState(5)
    rows = []
    base = rng.normal(5, 2, 10)
    for i, v in enumerate(base):
        rows += [
            {
                "track": f"t{i}",
                "provider": "good",
                "target": "vocals",
                "metric": "sdr",
                "value": v + 2 + rng.normal(0, 0.2),
            },
            {
                "track": f"t{i}",
                "provider": "same",
                "target": "vocals",
                "metric": "sdr",
                "value": v + rng.normal(0, 0.2),
            },
            {"track": f"t{i}", "provider": "base", "target": "vocals", "metric": "sdr", "value": v},
        ]
    rows += [{"track": "t0", "provider": "lonely", "target": "vocals", "metric": "sdr", "value": 1.0}]
    out = stats.compare(pd.DataFrame(rows), "sdr", "vocals", providers=["good", "same", "base", "lonely"])
    res = {(c.a, c.b): c for c in out}
    assert len(out) == 6
    gb = res[("good", "base")]
    assert gb.n == 10 and gb.win_rate == 1.0 and gb.ci_low > 1.5 and gb.verdict.startswith("good better")
    assert res[("same", "base")].verdict.startswith("no significant difference")
    assert res[("good", "lonely")].verdict == "too few tracks (n=1) for a test"
    # Holm: adjusted ≥ raw
    assert all(c.p_holm >= c.p for c in res.values() if np.isfinite(c.p))


def test_pricing_cheapest_packs_and_volumes() -> None:
    from stemlab.reports.pricing import PRICING, cheapest_packs, monthly_cost

    packs = PRICING["aistemsplitter"].packs
    assert cheapest_packs(3500, packs) == (pytest.approx(7 * 39.99), {"500 min": 7})
    # 160 min: 150 + 50 ($21.99) beats 500 ($39.99) and 4×50 ($27.96)
    usd, combo = cheapest_packs(160, packs)
    assert usd == pytest.approx(21.99) and combo == {"150 min": 1, "50 min": 1}
    assert cheapest_packs(0, packs) == (0.0, {})
    m = monthly_cost("mvsep", 1000, 210.0, usd_per_unit=0.02)
    assert m["units"] == 3000 and m["usd"] == pytest.approx(60.0)  # floor(210/60)=3 credits per song
    assert monthly_cost("mvsep", 10, 20.0)["units"] == 10  # floor(20/60)=0 → 1 credit minimum
    assert monthly_cost("dango", 10, 20.0)["units"] == 0 and monthly_cost("dango", 10, 200.0)["usd"] is None
