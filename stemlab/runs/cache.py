"""Content-addressed cache of separated stems (FLAC) and of scores.

``<output>/cache/stems/<job_key>/`` holds one 24-bit FLAC per stem and a
``manifest.json`` with each file's sha256 and the gain applied to keep peaks
inside full scale (separations may exceed ±1). Entries are written to a temp
directory and renamed, so a crash leaves either a whole entry or none; a
corrupt entry (hash mismatch) is discarded and recomputed.

``<output>/cache/scores/<job_key>/<metrics_hash>.json`` holds the scores of
one job under one metric configuration: changing only metric settings
recomputes only scores. Scores are always computed from the *cached* stems,
so a resumed run scores exactly what an uninterrupted one does.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import audio
from .._crash import crashpoint
from .._hashing import file_sha256
from ..errors import InputError, RunError
from ..types import Stems

__all__ = ["StemCache", "ScoreCache"]


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
        return (self._dir(key) / "manifest.json").is_file()

    def put(self, key: str, stems: Stems, meta: Mapping[str, Any] | None = None) -> Path:
        final = self._dir(key)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            entries = {}
            for name, arr in stems.items():
                peak = float(np.abs(arr).max()) if arr.size else 0.0
                scale = max(1.0, peak / (1.0 - 2.0**-22))
                fname = f"{_safe(name)}.flac"
                audio.encode(tmp / fname, arr / scale, stems.sample_rate, subtype="PCM_24")
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
        """The cached stems, or None if absent or corrupt (then removed)."""
        d = self._dir(key)
        try:
            manifest = json.loads((d / "manifest.json").read_text())
            out = {}
            for name, e in manifest["stems"].items():
                p = d / e["file"]
                if file_sha256(p) != e["sha256"]:
                    raise ValueError(f"{p} corrupt")
                arr, sr = audio.decode(p)
                out[name] = arr * np.float32(e["scale"])
            return Stems(out, int(manifest["sample_rate"]))
        except (OSError, ValueError, KeyError, InputError):
            shutil.rmtree(d, ignore_errors=True)
            return None

    def meta(self, key: str) -> dict[str, Any]:
        try:
            return json.loads((self._dir(key) / "manifest.json").read_text()).get("meta", {})
        except (OSError, ValueError):
            return {}

    def drop(self, key: str) -> None:
        shutil.rmtree(self._dir(key), ignore_errors=True)


class ScoreCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "scores"
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str, metrics_hash: str) -> Path:
        return self.root / key / f"{metrics_hash}.json"

    def get(self, key: str, metrics_hash: str) -> dict[str, Any] | None:
        p = self._path(key, metrics_hash)
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, metrics_hash: str, payload: Mapping[str, Any]) -> None:
        p = self._path(key, metrics_hash)
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
