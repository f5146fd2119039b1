"""The inference engine: exact reconstruction, chunking, batching, TTA,
precision and progress (stemlab.providers.local.engine)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from stemlab.errors import ConfigError, InputError  # noqa: E402
from stemlab.providers.local.engine import (  # noqa: E402
    Engine,
    EngineConfig,
    fade_window,
    identity_model,
    segment_starts,
)


def _mix(channels: int = 2, n: int = 20_011, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((channels, n)) * 0.3).astype(np.float32)


CONFIGS = [
    dict(segment=4096, overlap=0.25, fade="linear"),
    dict(segment=4096, step=4096 // 4, fade="linear", fade_length=409, pad_ends="reflect", edge="reflect"),  # MSST
    dict(segment=3000, overlap=0.5, fade="hann", batch_size=3),  # audio-separator MDX-Net
    dict(segment=5000, overlap=0.25, fade="triangle", batch_size=2),  # demucs' weight
    dict(segment=2048, overlap=0.0, fade="linear"),
    dict(segment=None),
    dict(segment=50_000),  # longer than the track: one padded segment
    dict(segment=4096, overlap=0.25, shifts=3, max_shift=2205, flip_channels=True, polarity=True, seed=7),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("channels", [1, 2])
def test_identity_model_gives_the_mixture_back(cfg, channels) -> None:
    mix = _mix(channels)
    out = Engine(EngineConfig(**cfg)).run(identity_model, mix)
    assert out.shape == (1, channels, mix.shape[1]) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], mix, atol=1e-6, rtol=0)


def test_every_sample_weighted_and_segments_cover_the_track() -> None:
    for n, seg, step in [(10, 4, 3), (12, 4, 4), (4, 4, 1), (3, 8, 2), (100, 7, 1)]:
        starts = segment_starts(n, seg, step)
        assert starts[0] == 0 and starts[-1] + seg >= n and all(b - a == step for a, b in zip(starts, starts[1:]))
        assert len(starts) == 1 or starts[-2] + seg < n  # minimal: no segment after the one reaching the end
    for kind in ("linear", "hann", "triangle", "constant"):
        w = fade_window(kind, 1000, 250)
        assert w.max() == pytest.approx(1.0, abs=1e-5) and w.min() >= 0 and w.shape == (1000,)
    lin = fade_window("linear", 100, 30, fade_length=10)
    assert lin[0] == 0 and lin[9] == 1 and lin[50] == 1 and lin[-1] == 0 and lin[-10] == 1


def test_linear_model_is_segment_independent() -> None:
    """A pointwise (memoryless) model gives the same output whatever the chunking."""
    gain = torch.tensor([0.5, -2.0]).view(1, 2, 1, 1)

    def model(x):
        return x[:, None] * gain

    mix = _mix(2, 9000, seed=3)
    ref = np.stack([mix * 0.5, mix * -2.0])
    for cfg in CONFIGS:
        out = Engine(EngineConfig(**cfg)).run(model, mix)
        np.testing.assert_allclose(out, ref, atol=2e-6)


def test_batching_does_not_change_the_output() -> None:
    conv = torch.nn.Conv1d(2, 4, 9, padding=4)
    torch.manual_seed(0)

    def model(x):
        return conv(x).view(x.shape[0], 2, 2, -1)

    mix = _mix(2, 15_000, seed=4)
    a = Engine(segment=3000, overlap=0.25, batch_size=1).run(model, mix)
    b = Engine(segment=3000, overlap=0.25, batch_size=4).run(model, mix)
    np.testing.assert_allclose(a, b, atol=1e-6)
    # overlap-add really blends neighbours: a different segmentation gives (slightly) different output
    c = Engine(segment=2000, overlap=0.25, batch_size=4).run(model, mix)
    assert not np.allclose(a, c, atol=1e-7)


def test_tta_passes_are_seeded_and_averaged() -> None:
    calls: list[tuple[int, ...]] = []

    def model(x):
        calls.append(tuple(x.shape))
        return torch.relu(x)[:, None]  # not odd: polarity inversion changes the answer

    mix = _mix(2, 8000, seed=5)
    e = Engine(segment=4000, overlap=0.25, shifts=2, max_shift=500, flip_channels=True, polarity=True, seed=1)
    out = e.run(model, mix)
    assert e.last.passes == 2 * 2 * 2 and len(e.last.shifts) <= 2
    # relu(x) and -relu(-x) average to x/2 for every pass: the mean of the passes is mix/2
    np.testing.assert_allclose(out[0], mix / 2, atol=1e-6)
    again = Engine(e.config).run(model, mix)
    np.testing.assert_array_equal(out, again)
    assert e.passes(2) != Engine(e.config, seed=2).passes(2)
    assert Engine(flip_channels=True).passes(1) == [(0, False, 1)]  # mono: nothing to flip


def test_flip_is_undone() -> None:
    def model(x):  # left channel ×2: asymmetric, so the flip must be undone for the average to hold
        y = x.clone()
        y[:, 0] *= 2
        return y[:, None]

    mix = _mix(2, 5000, seed=6)
    out = Engine(segment=2000, flip_channels=True).run(model, mix)
    np.testing.assert_allclose(out[0], mix * 1.5, atol=1e-6)


def test_progress_callback_and_bar(capsys) -> None:
    seen: list[tuple[int, int]] = []
    mix = _mix(2, 10_000)
    e = Engine(segment=2000, overlap=0.5, batch_size=2)
    e.run(identity_model, mix, progress=lambda d, t: seen.append((d, t)))
    total = seen[-1][1]
    assert [d for d, _ in seen] == list(range(1, total + 1)) and total == e.last.model_calls
    e.run(identity_model, mix, progress=True, desc="song-1")


def test_precision_bfloat16_runs_and_is_close() -> None:
    lin = torch.nn.Linear(16, 16)

    def model(x):
        b, c, t = x.shape
        y = lin(x.reshape(b, c, t // 16, 16)).reshape(b, c, t)
        return y[:, None]

    mix = _mix(2, 16 * 500, seed=8)
    a = Engine(segment=16 * 100, precision="float32").run(model, mix)
    b = Engine(segment=16 * 100, precision="bfloat16").run(model, mix)
    assert a.dtype == b.dtype == np.float32
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max() and not np.array_equal(a, b)


def test_bad_configuration_and_output_refused() -> None:
    with pytest.raises(ConfigError, match="overlap"):
        EngineConfig(overlap=1.0)
    with pytest.raises(ConfigError, match="fade"):
        EngineConfig(fade="cosine")
    with pytest.raises(ConfigError, match="max_shift"):
        EngineConfig(shifts=2)
    with pytest.raises(ConfigError, match="skip audio"):
        EngineConfig(segment=100, step=200)
    with pytest.raises(InputError, match="model returned shape"):
        Engine(segment=100).run(lambda x: x, _mix(2, 300))
    with pytest.raises(InputError, match="samples > 0"):
        Engine().run(identity_model, np.zeros((2, 0), np.float32))
