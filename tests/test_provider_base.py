"""Provider contract plumbing: spec strings, params, registry errors."""

from __future__ import annotations

import numpy as np
import pytest

import stemlab.providers as P
from stemlab import Separation, Stems
from stemlab.errors import ConfigError, InputError
from stemlab.providers.base import Param, Provider


class Gain(Provider):
    family = "testgain"
    description = "multiplies the mixture (test double for the registry)"
    variants = ("half", "full")
    default_variant = "full"
    params_schema = (
        Param("gain_db", float, 0.0, unit="dB", min=-60, max=12),
        Param("stems_n", int, 2, unit="count", choices=(1, 2)),
        Param("normalize", bool, False),
    )
    option_names = ("device",)

    @property
    def stems(self):
        return ("a", "b")[: self.config["stems_n"]]

    def separate(self, track, sample_rate=None):
        from stemlab.providers.base import as_track

        t = as_track(track, sample_rate)
        g = 10 ** (self.config["gain_db"] / 20) * (0.5 if self.variant == "half" else 1.0)
        return Separation(Stems({s: t.mixture * g for s in self.stems}, t.sample_rate), self.id)


@pytest.fixture(autouse=True)
def _registered():
    P.register(Gain)
    yield


def test_spec_roundtrip_and_defaults() -> None:
    p = P.create("testgain:half?gain_db=-6&normalize=true")
    assert p.variant == "half" and p.config == {"gain_db": -6.0, "stems_n": 2, "normalize": True}
    assert p.id == "testgain:half?gain_db=-6.0&normalize=true"
    assert P.create(p.id).params_hash == p.params_hash
    q = P.create("testgain")
    assert q.id == "testgain:full" and q.params_hash != p.params_hash
    d = P.create({"provider": "testgain:full", "params": {"stems_n": 1}, "device": "cpu"})
    assert d.stems == ("a",) and d.options == {"device": "cpu"}


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("testgain:quarter", "unknown variant 'quarter'; valid: ['half', 'full']"),
        ("testgain?shift=2", "unknown parameter(s) ['shift']; valid: ['gain_db', 'normalize', 'stems_n']"),
        ("testgain?gain_db=loud", "testgain.params.gain_db: expected float in [-60, 12], got 'loud'"),
        ("testgain?gain_db=20", "expected float in [-60, 12], got 20.0"),
        ("testgain?stems_n=3", "testgain.params.stems_n: expected one of [1, 2], got 3"),
        ("testgain?normalize=maybe", "expected bool, got 'maybe'"),
        ("nosuchprovider:x", "unknown provider 'nosuchprovider'; valid: ["),
        ("", "provider spec: expected"),
    ],
)
def test_bad_specs_name_the_field(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        P.create(spec)
    assert needle in str(ei.value)


def test_unknown_option_and_array_input() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['threads'\]; valid: \['device'\]"):
        P.create("testgain", threads=4)
    p = P.create("testgain:half")
    x = np.ones((2, 10), np.float32)
    sep = p.separate(x, 8000)
    assert np.allclose(sep.stems["a"], 0.5) and sep.stems.sample_rate == 8000
    with pytest.raises(InputError, match="pass sample_rate"):
        p.separate(x)


def test_families_include_registered() -> None:
    assert "testgain" in P.families()
    assert P.get_class("TESTGAIN") is Gain
    info = Gain.describe()
    assert info["params"][0] == {
        "name": "gain_db",
        "type": "float in [-60, 12]",
        "default": 0.0,
        "unit": "dB",
        "help": "",
    }
