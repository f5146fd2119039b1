"""A real run shared by the report tests: sandboxed services (priced,
unpriced, free points) next to local options and bounds, run by the CLI off a
terminal (its stdout/stderr kept)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def money_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    from tests.reports.test_money_time import DATASET, PROVIDERS

    base = tmp_path_factory.mktemp("money")
    out = base / "run"
    spec = base / "spec.json"
    spec.write_text(json.dumps({"name": "money and time", "datasets": [DATASET], "providers": PROVIDERS,
                                "metrics": ["bsseval_v4", "usdr"], "output": str(out)}))
    p = subprocess.run([sys.executable, "-m", "stemlab.cli", "run", str(spec), "--progress-every", "2"],
                       capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return out, p
