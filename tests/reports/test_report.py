"""The HTML report: self-contained, all sections present, and rendered by a
real headless Chromium (plots have SVG content, no JavaScript errors)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from stemlab.reports import build_report
from stemlab.runs import run
from stemlab.runs import runner as runner_mod
from tests.fakes import fake_score, register_all


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory, demo_small):
    register_all()
    mp = pytest.MonkeyPatch()
    mp.setattr(runner_mod, "score_stems", fake_score)
    out = tmp_path_factory.mktemp("res")
    run({"datasets": [{"name": "demo", "options": {"tracks": 2, "seconds": 4.0}}],
         "providers": ["t_scaled?gain=0.5", "t_scaled?gain=0.9", "t_broken"], "metrics": ["usdr"],
         "output": str(out)}, quiet=True)
    mp.undo()
    return out


def test_report_sections_and_tables(results_dir: Path) -> None:
    html_path = build_report(results_dir)
    doc = html_path.read_text()
    assert html_path.name == "report.html" and len(doc) > 1_000_000  # plotly.js inlined
    assert "Plotly.newPlot" in doc
    assert not re.search(r"<script[^>]*\ssrc=", doc), "report must not load scripts from elsewhere"
    for section in ("Leaderboard — usdr", "Is A better than B?", "Quality vs cost", "Latency", "Cost",
                    "Failures (2)", "Listen", "Run metadata"):
        assert section in doc, section
    assert "weights missing: expected /nowhere/model.th" in doc
    assert doc.count("data:audio/mpeg;base64,") == 8  # 2 providers × 4 stems of one track
    md = (results_dir / "report.md").read_text()
    assert "| provider |" in md and "t_scaled?gain=0.9" in md
    assert (results_dir / "leaderboard.csv").read_text().startswith("provider,target,value,ci_low,ci_high,n_tracks")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


@pytest.mark.browser
def test_report_renders_in_headless_chromium(results_dir: Path, tmp_path: Path) -> None:
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    html_path = build_report(results_dir, tmp_path / "r.html")
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000", "--window-size=1300,2400"]
    dom = subprocess.run(flags + ["--dump-dom", html_path.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    n_plots = html.count("class=\"plot-container plotly\"")
    assert n_plots >= 6, f"only {n_plots} plots rendered"
    assert html.count("class=\"main-svg\"") >= 2 * n_plots  # plotly draws two svg layers per plot
    assert re.search(r"<path class=\"point\"|class=\"bars\"", html), "no bars/points drawn"
    assert 'id="js-errors" style="display:none"' in html, "JavaScript errors: " + html[html.find("js-errors"):][:300]
    shot = tmp_path / "shot.png"
    res = subprocess.run(flags + [f"--screenshot={shot}", html_path.as_uri()], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 30_000  # a blank page compresses to a few KB
