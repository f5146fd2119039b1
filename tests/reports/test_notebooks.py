"""The three notebooks execute top to bottom under papermill and nbval on a
results directory, and are stored without outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from stemlab.reports.notebooks import NOTEBOOKS, notebook_path, run_notebook
from tests.reports.test_report import results_dir  # noqa: F401  (module fixture)

REPO = Path(__file__).resolve().parents[2]


def test_notebooks_are_stripped_and_parameterized() -> None:
    for name in NOTEBOOKS:
        nb = nbformat.read(notebook_path(name), as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{name}: exactly one cell tagged 'parameters'"
        assert "results = None" in tagged[0].source
        for c in nb.cells:
            if c.cell_type == "code":
                assert c.outputs == [] and c.execution_count is None, f"{name}: outputs not stripped"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_papermill_executes(name: str, results_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    out = run_notebook(name, {"results": str(results_dir)}, output=tmp_path / f"{name}.ipynb")
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), "not every cell ran"
    text = json.dumps(outputs)
    assert "t_scaled?gain=0.9" in text  # the providers of the run appear in the outputs
    if name == "compare":
        assert "too few tracks (n=2) for a test" in text and "application/vnd.plotly.v1+json" in text
    if name == "procurement":
        assert "279.93" in text  # 1000 songs × 3.5 min: 7 × 500-min packs of AI Stem Splitter
    if name == "track_inspector":
        assert "audio/wav" in text and "reference vocals" in text


def test_nbval_lax(results_dir: Path) -> None:  # noqa: F811
    env = dict(os.environ, STEMLAB_RESULTS=str(results_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", "--rootdir", str(REPO),
         *[str(notebook_path(n)) for n in NOTEBOOKS]],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
