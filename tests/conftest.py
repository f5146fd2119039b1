"""Shared fixtures. The cache (demo set, weights, results) goes to a per-session
temp dir so tests never touch the user's cache."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

if "STEMLAB_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="stemlab-test-cache-")
    os.environ["STEMLAB_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, True)

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("STEMLAB_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


MUSDB_SAMPLE = shared_data_dir() / "musdb18-7s-sample"


@pytest.fixture(scope="session")
def musdb_sample() -> Path:
    """The real 7-s MUSDB18 sample in ../shared/data (skip when absent)."""
    if not (MUSDB_SAMPLE / "train").is_dir():
        pytest.skip(f"shared MUSDB sample not found at {MUSDB_SAMPLE}")
    return MUSDB_SAMPLE


@pytest.fixture(scope="session")
def demo_small():
    """Two 4-second demo songs (fast to generate and to separate)."""
    import stemlab.datasets as D

    return D.load("demo", tracks=2, seconds=4.0)


@pytest.fixture
def rng() -> np.random.RandomState:
    return np.random.RandomState(1234)
