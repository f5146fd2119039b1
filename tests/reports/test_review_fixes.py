"""Report arithmetic on inputs a review found mishandled: an unknown stem
list in a jobs row, a NaN variant, and Dango's free short songs in the
monthly cost of a provider (same answer as the service's own formula)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from stemlab.reports import tables
from stemlab.reports.pricing import Volume, monthly_cost, provider_monthly


def _scores() -> pd.DataFrame:
    rows = []
    for prov in ("a", "b"):
        for t in ("vocals", "drums", "bass", "other"):
            rows.append({"provider": prov, "track": "x", "target": t, "metric": "usdr", "aggregation": "track",
                         "value": 5.0 if prov == "a" else 3.0})
    return pd.DataFrame(rows)


def test_unknown_stem_list_does_not_drop_a_provider() -> None:
    scores = _scores()
    jobs = pd.DataFrame({"provider": ["a", "b", "b"], "stems": ["vocals,drums,bass,other", float("nan"), ""]})
    d = tables.delivered(scores, "usdr", jobs)
    assert d["b"] == d["a"] == ("vocals", "drums", "bass", "other")
    # the union over a provider's rows: one job that named fewer stems does not hide the others
    jobs2 = pd.DataFrame({"provider": ["a", "a"], "stems": ["vocals,drums", "bass,other"]})
    assert tables.delivered(scores, "usdr", jobs2)["a"] == ("vocals", "drums", "bass", "other")


@pytest.mark.parametrize("minutes", [0.25, 0.45, 3.5])
def test_dango_monthly_cost_counts_only_paid_points(minutes: float) -> None:
    vol = Volume(1000, minutes * 60)
    got = provider_monthly({"family": "dango", "kind": "remote"}, vol, {"dango": 0.01})
    want = monthly_cost("dango", 1000, minutes * 60, usd_per_unit=0.01)
    assert math.isclose(got["usd_per_month"], want["usd"], abs_tol=1e-9)
    if minutes * 60 < 30:
        assert got["usd_per_month"] == 0.0 and "free points" in got["basis"]
    else:
        assert got["usd_per_month"] > 0


def test_nan_variant_is_no_variant() -> None:
    row = {"family": "aistemsplitter", "kind": "remote", "variant": float("nan")}
    got = provider_monthly(row, Volume(100, 180.0))
    assert got["basis"] == "" and math.isfinite(got["usd_per_month"])
    plain = provider_monthly({**row, "variant": None}, Volume(100, 180.0))
    assert math.isclose(got["usd_per_month"], plain["usd_per_month"])
