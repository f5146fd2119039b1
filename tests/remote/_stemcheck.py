"""Shared helpers of the remote-provider tests: a 3-s demo excerpt with
references, a lag-compensated SDR (lossy outputs carry encoder delay) and a
recorder of the service statuses a provider polls."""

from __future__ import annotations

import numpy as np


def best_lag(est: np.ndarray, ref: np.ndarray, max_lag: int = 4096) -> int:
    """Samples by which ``est`` lags ``ref`` (cross-correlation of mono sums)."""
    e = np.asarray(est, np.float64).mean(axis=0)
    r = np.asarray(ref, np.float64).mean(axis=0)
    n = 1 << int(np.ceil(np.log2(e.size + r.size)))
    xc = np.fft.irfft(np.fft.rfft(e, n) * np.conj(np.fft.rfft(r, n)), n)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    return int(lags[int(np.argmax(xc[lags % n]))])


def aligned_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """SDR in dB of ``est`` against ``ref`` after removing the delay."""
    lag = best_lag(est, ref)
    e = np.asarray(est, np.float64)
    r = np.asarray(ref, np.float64)
    e = e[:, lag:] if lag >= 0 else np.pad(e, ((0, 0), (-lag, 0)))
    n = min(e.shape[1], r.shape[1])
    e, r = e[:, :n], r[:, :n]
    return float(10 * np.log10((np.sum(r**2) + 1e-12) / (np.sum((r - e) ** 2) + 1e-12)))


def aligned_score(stems, track, spec, kind):
    """Runner scorer stand-in (``runner.score_stems``): lag-compensated SDR
    per target; handles the encoder delay of MP3 stems."""
    rows = []
    refs = track.references
    for n in stems.names:
        if n in refs:
            est = np.asarray(stems[n][:, :])  # an array, or a lazy source of the stem cache
            rows.append({"target": n, "metric": "sdr_aligned", "value": aligned_sdr(est, refs[n]),
                         "aggregation": "track", "unit": "dB"})
    return {"rows": rows, "frames": [], "museval": None, "corrections": {}}


def record_statuses(provider) -> list[str]:
    """Wrap ``provider.fetch_state`` so every polled service status is
    appended to the returned list (in poll order)."""
    seen: list[str] = []
    orig = provider.fetch_state

    async def spy(job, rid):
        st = await orig(job, rid)
        seen.append(st.service_status)
        return st

    provider.fetch_state = spy
    return seen


def status_order(seen: list[str]) -> list[str]:
    """The statuses with consecutive repeats collapsed (the state sequence)."""
    return [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
