"""The HTML report: self-contained, its sections present, its sidecars named
after it, and rendered by a real headless Chromium at 1,400 px: every plot
has data, neither the page nor any table is wider than the window (every tab
shown), no heading is empty, no JavaScript error; screenshots are kept as
test artefacts (their paths are printed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
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


def test_report_sections_and_tables(results_dir: Path, tmp_path: Path) -> None:
    html_path = build_report(results_dir, tmp_path / "report.html")
    doc = html_path.read_text()
    assert html_path.name == "report.html" and len(doc) > 1_000_000  # plotly.js inlined
    assert "Plotly.newPlot" in doc
    assert not re.search(r"<script[^>]*\ssrc=", doc), "report must not load scripts from elsewhere"
    for section in ("For researchers: per-target leaderboard", "For buyers: what to use at your volume",
                    "<b>usdr [dB]</b>", "Overall, like for like", "Per target: every metric, with CIs",
                    "Quality, cost and latency per target", "Procurement at your volume", "Price tables (dated)",
                    "Time", "Cost of this run", "Failures (2)", "Listen", "Run metadata"):
        assert section in doc, section
    assert "weights missing: expected /nowhere/model.th" in doc
    # listening: per target, the same excerpt of the mixture, the reference and each provider's estimate
    scores = pd.read_parquet(results_dir / "scores.parquet")
    targets = sorted(set(scores.target))
    providers = sorted(set(scores.provider))
    assert doc.count("data:audio/mpeg;base64,") == len(targets) * (2 + len(providers)) == 16
    assert doc.count("<img src='data:image/png;base64,") == 16  # a spectrogram for each clip
    md = (tmp_path / "report.md").read_text()
    assert "| provider |" in md and "t_scaled?gain=0.9" in md
    assert (tmp_path / "report.leaderboard.csv").read_text().startswith(
        "provider,target,value,ci_low,ci_high,n_tracks")
    assert not (tmp_path / "leaderboard.csv").exists()


def test_default_home_is_reports_run_id(results_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from stemlab.runs import load_results

    monkeypatch.chdir(tmp_path)
    path = build_report(results_dir, clips=False)
    rid = load_results(results_dir).run_id
    assert path == Path("reports") / rid / "report.html" and path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html", "report.leaderboard.csv", "report.md"]


def test_templates_are_package_data() -> None:
    import tomllib

    from stemlab.reports.templates import template_dir

    root = Path(__file__).resolve().parents[2]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())
    inc = cfg["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert inc["reports/templates"] == "stemlab/_report_templates"
    assert template_dir() in (root / "reports" / "templates", root / "stemlab" / "_report_templates")
    assert (root / "reports" / "README.md").is_file()
    for f in ("report.html", "report.css"):
        assert (root / "reports" / "templates" / f).is_file()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


#: injected by the test (not part of the report): shows every tab, then measures
_CHECK = """<script>
window.addEventListener('load', function () { setTimeout(function () {
  document.querySelectorAll('.tabpanel').forEach(function (p) { p.classList.add('on'); });
  document.querySelectorAll('.js-plotly-plot').forEach(function (g) { try { Plotly.Plots.resize(g); } catch (e) {} });
  setTimeout(function () {
    var de = document.documentElement, vw = de.clientWidth, out = {};
    out.page = [de.scrollWidth, vw, document.body.scrollWidth];
    out.tables = Array.from(document.querySelectorAll('table')).map(function (t) {
      var r = t.getBoundingClientRect(), pr = t.parentElement.getBoundingClientRect();
      return {id: t.id, sw: t.scrollWidth, cw: t.clientWidth, right: r.right, parent: pr.right, vw: vw};
    });
    out.plots = Array.from(document.querySelectorAll('.js-plotly-plot')).map(function (g) {
      var n = (g.calcdata || []).reduce(function (a, cd) { return a + cd.length; }, 0);
      return {id: g.id, traces: (g.data || []).length, points: n, right: g.getBoundingClientRect().right,
              title: ((g.layout || {}).title || {}).text || ''};
    });
    out.empty = Array.from(document.querySelectorAll('h1,h2,h3')).filter(function (h) {
      for (var n = h.nextElementSibling; n && !/^H[1-3]$/.test(n.tagName); n = n.nextElementSibling) {
        if (n.textContent.trim() || n.querySelector('table,img,audio,.plot')) return false;
      }
      return true;
    }).map(function (h) { return h.textContent; });
    out.errors = window.__stemlabErrors;
    var pre = document.createElement('pre'); pre.id = 'layout-check'; pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }, 1500);
}, 500); });
</script>"""


def _render(exe: str, html_path: Path, tmp: Path, name: str) -> dict:
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             f"--user-data-dir={tmp / ('profile-' + name)}", "--virtual-time-budget=30000"]
    checked = tmp / f"{name}.checked.html"
    checked.write_text(html_path.read_text().replace("</body>", _CHECK + "</body>"))
    dom = subprocess.run(flags + ["--window-size=1400,2400", "--dump-dom", checked.as_uri()], capture_output=True,
                         text=True, timeout=300)
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'<pre id="layout-check">(.*?)</pre>', dom.stdout, flags=re.S)
    assert m, "the layout check did not run: " + dom.stdout[-500:]
    import html as H

    res = json.loads(H.unescape(m.group(1)))
    shots = []
    for size, label in (("1400,1000", "first-screen"), ("1400,2400", "top")):
        shot = tmp / f"{name}-{label}.png"
        r = subprocess.run(flags + [f"--window-size={size}", f"--screenshot={shot}", html_path.as_uri()],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 30_000  # a blank page compresses to a few KB
        shots.append(shot)
    keep = os.environ.get("STEMLAB_TEST_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for s in shots:
            shutil.copy(s, Path(keep) / s.name)
    print(f"\nscreenshots of {name}: " + ", ".join(str(s) for s in shots))
    res["dom"] = dom.stdout
    return res


def _assert_layout(res: dict, min_plots: int) -> None:
    vw = res["page"][1]
    assert vw >= 1380, res["page"]  # a 1,400-px window
    assert res["page"][0] <= vw and res["page"][2] <= vw, f"page wider than the window: {res['page']}"
    wide = [t for t in res["tables"] if t["sw"] > t["cw"] + 1 or t["right"] > min(t["parent"], t["vw"]) + 1]
    assert not wide, f"tables wider than their box or the window: {wide}"
    assert len(res["tables"]) >= 8
    empty = [p for p in res["plots"] if p["traces"] == 0 or p["points"] == 0]
    assert not empty, f"plots without data: {empty}"
    assert len(res["plots"]) >= min_plots
    assert all(p["right"] <= vw + 1 for p in res["plots"])
    assert not res["empty"], f"headings with nothing under them: {res['empty']}"
    assert not res["errors"], res["errors"]
    assert 'id="js-errors" style="display:none"' in res["dom"]


@pytest.mark.browser
def test_report_renders_in_headless_chromium(results_dir: Path, tmp_path: Path) -> None:
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    html_path = build_report(results_dir, tmp_path / "r.html")
    res = _render(exe, html_path, tmp_path, "fakes")
    _assert_layout(res, min_plots=6)
    assert re.search(r"<path class=\"point\"|class=\"bars\"", res["dom"]), "no bars/points drawn"


@pytest.mark.browser
def test_full_report_renders_at_1400_px(money_run, tmp_path: Path) -> None:
    """Services (sandboxed, priced and not), local options and bounds: every
    tab's tables fit, every figure has data, simulated time is labelled."""
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    html_path = build_report(money_run[0], tmp_path / "full.html")
    res = _render(exe, html_path, tmp_path, "full")
    _assert_layout(res, min_plots=20)
    titles = [p["title"] for p in res["plots"]]
    assert any("SIMULATED latency" in t for t in titles) and any("measured latency" in t for t in titles)
    # the first screen holds both answers: the leaderboard and the recommendation sit side by side at the top
    assert (
        res["dom"].index('id="researchers"') < res["dom"].index('id="buyers"') < res["dom"].index('id="like-for-like"')
    )
