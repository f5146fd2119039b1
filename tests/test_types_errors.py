"""Value types, the error tree and secret redaction."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest

from stemlab import Cost, Stems, Track
from stemlab._secrets import get_secret, install_log_filter, redact, register_secret
from stemlab.errors import (
    BudgetExceeded,
    ConfigError,
    InputError,
    ProviderError,
    ProviderOutputError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    StemlabError,
)


def test_error_tree() -> None:
    for cls in (ProviderUnavailable, ProviderRejected, ProviderOutputError, ProviderTimeout):
        assert issubclass(cls, ProviderError) and issubclass(cls, StemlabError)
    assert issubclass(InputError, ValueError) and issubclass(ConfigError, ValueError)
    assert issubclass(BudgetExceeded, StemlabError)
    assert ProviderTimeout.retryable and ProviderUnavailable.retryable and not ProviderRejected.retryable
    e = ProviderTimeout("job split_1 exceeded 300 s", provider="aistemsplitter", seconds=300)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is ProviderTimeout and str(back) == str(e) and back.details["seconds"] == 300
    assert back.kind == "ProviderTimeout"


def test_secrets_are_redacted_everywhere(caplog, monkeypatch) -> None:
    key = "ast_test_" + "9f8e7d6c5b4a3210" * 2
    monkeypatch.setenv("AISTEMSPLITTER_API_KEY", key)
    s = get_secret("aistemsplitter")
    assert s is not None and s.get() == key
    assert key not in repr(s) and key not in str(s) and key not in f"{s}"
    assert "$AISTEMSPLITTER_API_KEY" in repr(s)
    err = ProviderRejected(f"401 from server for key {key}", provider="x", header=f"Bearer {key}")
    assert key not in str(err) and key not in repr(err.details) and "***" in str(err)
    assert redact(f"url?api_token={key}&x=1") == "url?api_token=***&x=1"
    install_log_filter()
    log = logging.getLogger("stemlab.test")
    with caplog.at_level(logging.DEBUG, logger="stemlab.test"):
        log.debug("sending Authorization: Bearer %s", key)
    assert caplog.records and all(key not in r.getMessage() for r in caplog.records)
    assert pickle.loads(pickle.dumps(s)).get() == key


def test_short_strings_are_not_treated_as_secrets() -> None:
    register_secret("abc")
    assert redact("abc abc") == "abc abc"


def test_stems_validation_and_helpers() -> None:
    a = np.ones((2, 100), np.float32)
    s = Stems({"vocals": a, "drums": 2 * a, "bass": 3 * a}, 44100)
    assert s.names == ("vocals", "drums", "bass") and s.num_samples == 100 and s.num_channels == 2
    assert s.to_array().shape == (3, 2, 100)
    acc = s.with_accompaniment()
    assert np.allclose(acc["accompaniment"], 5.0)
    with pytest.raises(InputError, match="all stems must share"):
        Stems({"a": a, "b": np.ones((2, 99), np.float32)}, 44100)
    with pytest.raises(InputError, match="expected floating-point samples"):
        Stems({"a": np.ones((2, 3), np.int16)}, 44100)
    with pytest.raises(InputError, match="sample_rate must be a positive int"):
        Stems({"a": a}, 0)
    with pytest.raises(KeyError, match="no stem 'piano'"):
        s["piano"]


def test_track_is_lazy_and_hash_is_content_based() -> None:
    calls = []

    def load():
        calls.append(1)
        return np.full((2, 50), 0.5, np.float32)

    t = Track(name="x", sample_rate=8000, load_mixture=load)
    assert calls == []
    h = t.content_hash
    assert calls == [1] and t.mixture.shape == (2, 50) and calls == [1]
    t2 = Track.from_arrays("y", np.full((2, 50), 0.5, np.float32), 8000)
    assert t2.content_hash == h
    t3 = Track.from_arrays("y", np.full((2, 50), 0.5, np.float32), 16000)
    assert t3.content_hash != h
    with pytest.raises(InputError, match="references have 10 samples, mixture 50"):
        Track.from_arrays("z", np.zeros((2, 50), np.float32), 8000, {"v": np.zeros((2, 10), np.float32)})


def test_cost_addition() -> None:
    c = Cost(usd=0.5, credits=30, credit_unit="seconds") + Cost(
        usd=0.25, credits=10, credit_unit="seconds", estimated=False
    )
    assert c.usd == 0.75 and c.credits == 40 and c.credit_unit == "seconds" and c.estimated
    assert (Cost(credits=1, credit_unit="a") + Cost(credits=1, credit_unit="b")).credit_unit == "mixed"
