"""Content-addressed cache of separated stems (FLAC) and of scores.

``<output>/cache/stems/<job_key>/`` holds one 24-bit FLAC per stem and a
``manifest.json`` with each file's sha256 and the gain applied to keep peaks
inside full scale (separations may exceed ±1). Entries are written to a temp
directory and renamed, so a crash leaves either a whole entry or none; a
corrupt entry (hash mismatch) is discarded and recomputed.

``<output>/cache/scores/<job_key>/<metrics_hash>-<refs_id>.json`` holds the
scores of one job under one metric configuration against one track's
references: changing only metric settings recomputes only scores, and two
tracks sharing a separation (identical mixtures) are each scored against
their own references. Scores are always computed from the *cached* stems,
so a resumed run scores exactly what an uninterrupted one does.

Every entry is validated when read: a corrupt or foreign one is logged (with
its path), removed and recomputed — re-downloaded for a paid remote job,
never paid again (the manifest's ``meta.paid`` records what was paid).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .. import audio
from .._crash import crashpoint
from .._hashing import file_sha256
from ..errors import InputError, RunError
from ..types import Stems

if TYPE_CHECKING:  # pragma: no cover
    from ..metrics.sources import SourceStems

__all__ = ["StemCache", "ScoreCache"]

log = logging.getLogger("stemlab.runs.cache")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CorruptEntry(ValueError):
    """A cache entry that is present but unusable (the reason is the message)."""


def _check_manifest(m: Any) -> None:
    if not isinstance(m, dict):
        raise CorruptEntry(f"manifest is a {type(m).__name__}, expected an object")
    sr = m.get("sample_rate")
    if isinstance(sr, bool) or not isinstance(sr, int) or sr <= 0:
        raise CorruptEntry(f"manifest sample_rate is {sr!r}, expected a positive int (Hz)")
    stems = m.get("stems")
    if not isinstance(stems, dict) or not stems:
        raise CorruptEntry("manifest lists no stems")
    for name, e in stems.items():
        if not isinstance(e, dict):
            raise CorruptEntry(f"manifest entry for stem {name!r} is not an object")
        f, sc, h = e.get("file"), e.get("scale"), e.get("sha256")
        if not isinstance(f, str) or not f or "/" in f or "\\" in f or f.startswith("."):
            raise CorruptEntry(f"stem {name!r}: file name {f!r} is not a plain file name")
        if isinstance(sc, bool) or not isinstance(sc, (int, float)) or not math.isfinite(sc) or sc < 1.0:
            raise CorruptEntry(f"stem {name!r}: scale {sc!r}, expected a finite number ≥ 1")
        if not isinstance(h, str) or not _SHA256.fullmatch(h):
            raise CorruptEntry(f"stem {name!r}: sha256 {h!r} is not a hex digest")
    if not isinstance(m.get("meta", {}), dict):
        raise CorruptEntry("manifest meta is not an object")


def _check_score_row(i: int, r: Any) -> None:
    if not isinstance(r, dict):
        raise CorruptEntry(f"rows[{i}] is not an object")
    for k in ("target", "metric", "aggregation"):
        if not isinstance(r.get(k), str):
            raise CorruptEntry(f"rows[{i}].{k} is {r.get(k)!r}, expected a string")
    v = r.get("value")
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise CorruptEntry(f"rows[{i}].value is {v!r}, expected a number")


def _check_scores(p: Any) -> None:
    if not isinstance(p, dict):
        raise CorruptEntry(f"payload is a {type(p).__name__}, expected an object")
    rows = p.get("rows")
    if not isinstance(rows, list):
        raise CorruptEntry("payload has no list of rows")
    for i, r in enumerate(rows):
        _check_score_row(i, r)
    if not isinstance(p.get("frames", []), list) or not all(isinstance(f, dict) for f in p.get("frames", [])):
        raise CorruptEntry("frames is not a list of objects")
    mj = p.get("museval")
    if mj is not None and not (isinstance(mj, dict) and isinstance(mj.get("targets"), list)):
        raise CorruptEntry("museval is not museval's track JSON")
    if not isinstance(p.get("corrections", {}), dict):
        raise CorruptEntry("corrections is not an object")
    if not rows and not p.get("note"):
        raise CorruptEntry("payload has no rows and no note saying why")


def _disk_error(e: OSError, where: Path) -> RunError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return RunError(f"cache directory {where} is full ({e.strerror}); free space and rerun with --resume", file=str(where))
    return RunError(f"cannot write cache entry in {where} ({e.strerror or e})", file=str(where))


class StemCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "stems"
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        """An entry is present (not checked: :meth:`get` validates)."""
        return (self._dir(key) / "manifest.json").is_file()

    def put(self, key: str, stems: Stems, meta: Mapping[str, Any] | None = None) -> Path:
        final = self._dir(key)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            entries = {}
            for name, arr in stems.items():
                peak = max(float(arr.max()), -float(arr.min())) if arr.size else 0.0
                scale = max(1.0, peak / (1.0 - 2.0**-22))
                fname = f"{_safe(name)}.flac"
                audio.encode(tmp / fname, arr, stems.sample_rate, subtype="PCM_24", scale=scale)
                entries[name] = {"file": fname, "scale": scale, "sha256": file_sha256(tmp / fname)}
            manifest = {"sample_rate": stems.sample_rate, "stems": entries, "meta": dict(meta or {})}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
            crashpoint("cache.write")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _disk_error(e, self.root) from None
        except InputError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if "No space" in str(e) or "full" in str(e):
                raise RunError(f"cache directory {self.root} is full; free space and rerun with --resume") from None
            raise
        return final

    def get(self, key: str) -> Stems | None:
        """The cached stems, decoded, or None if absent. A corrupt entry
        (unreadable or malformed manifest, hash mismatch, undecodable file,
        another rate, stems of unequal shape) is logged with its path,
        removed, and reported as absent."""

        def decoded(p: Path, scale: float) -> tuple[Any, int]:
            arr, sr = audio.decode(p)
            if scale != 1.0:
                arr *= np.float32(scale)
            return arr, sr

        return self._load(key, decoded, Stems)

    def open(self, key: str) -> "SourceStems | None":
        """The cached stems as lazy sources (each FLAC decoded once into a raw
        temporary file — the metrics read it several times — the manifest's
        scale applied per block), or None if absent; validated as in
        :meth:`get`."""
        from ..metrics.sources import AudioFileSource, SourceStems

        def lazy(p: Path, scale: float) -> tuple[Any, int]:
            src = AudioFileSource(p, scale=None if scale == 1.0 else scale, spool=True)
            return src, src.sample_rate

        return self._load(key, lazy, SourceStems)

    def _load(self, key: str, read: Any, make: Any) -> Any:
        """The entry's stems through ``read(path, scale) -> (stem, rate)``,
        assembled by ``make(stems, rate)``; None when absent or corrupt."""
        d = self._dir(key)
        if not (d / "manifest.json").is_file():
            return None
        try:
            manifest = self._manifest(d)
            out = {}
            for name, e in manifest["stems"].items():
                p = d / e["file"]
                if file_sha256(p) != e["sha256"]:
                    raise CorruptEntry(f"{p.name}: sha256 differs from the manifest")
                stem, sr = read(p, e["scale"])
                if sr != manifest["sample_rate"]:
                    raise CorruptEntry(f"{p.name}: {sr} Hz, manifest says {manifest['sample_rate']}")
                out[name] = stem
            return make(out, int(manifest["sample_rate"]))
        except (OSError, CorruptEntry, InputError) as e:
            self._discard(d, e)
            return None

    @staticmethod
    def _manifest(d: Path) -> dict[str, Any]:
        try:
            m = json.loads((d / "manifest.json").read_text())
        except ValueError as e:
            raise CorruptEntry(f"manifest.json is not JSON ({e})") from None
        _check_manifest(m)
        return m

    def _discard(self, d: Path, why: BaseException) -> None:
        log.warning("stem cache entry %s is corrupt (%s): removed; it will be fetched again", d, why)
        shutil.rmtree(d, ignore_errors=True)

    def meta(self, key: str) -> dict[str, Any]:
        """The manifest's ``meta`` ({} when absent or corrupt)."""
        try:
            return dict(self._manifest(self._dir(key)).get("meta", {}))
        except (OSError, ValueError):
            return {}

    def drop(self, key: str) -> None:
        shutil.rmtree(self._dir(key), ignore_errors=True)


class ScoreCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "scores"
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str, metrics_hash: str, refs_id: str = "") -> Path:
        return self.root / key / (f"{metrics_hash}-{refs_id}.json" if refs_id else f"{metrics_hash}.json")

    def get(self, key: str, metrics_hash: str, refs_id: str = "") -> dict[str, Any] | None:
        """The cached payload, or None if absent. A corrupt one (not JSON, or
        not the shape :func:`stemlab.metrics.scoring.score_stems` returns) is
        logged with its path and removed, so it is recomputed from the stems."""
        p = self._path(key, metrics_hash, refs_id)
        try:
            text = p.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("score cache entry %s is unreadable (%s): recomputing", p, e.strerror or e)
            return None
        try:
            payload = json.loads(text)
            _check_scores(payload)
        except (ValueError, CorruptEntry) as e:
            log.warning("score cache entry %s is corrupt (%s): removed; recomputing", p, e)
            p.unlink(missing_ok=True)
            return None
        return payload

    def put(self, key: str, metrics_hash: str, payload: Mapping[str, Any], refs_id: str = "") -> None:
        p = self._path(key, metrics_hash, refs_id)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(dict(payload), default=_json_default, allow_nan=True))
            os.replace(tmp, p)
        except OSError as e:
            raise _disk_error(e, self.root) from None

    def drop(self, key: str) -> None:
        shutil.rmtree(self.root / key, ignore_errors=True)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "stem"
