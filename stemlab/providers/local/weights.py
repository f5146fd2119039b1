"""Model weights: where they are cached, and downloading them on first use.

A :class:`WeightFile` names one file of a model, the URLs it comes from
(canonical source first) and the cache it belongs in — the caches other
tools already use, so a file fetched by one tool is found by the others:

* ``torch-hub`` — ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME``),
  where ``torch.hub.load_state_dict_from_url`` and demucs < 4.1 keep
  ``.th``/``.ckpt`` files, flat;
* ``hf`` — the Hugging Face hub cache (``$HF_HUB_CACHE``), in its own layout
  ``models--{org}--{name}/blobs/{sha256}`` + ``snapshots/{commit}/{file}``
  (a relative symlink, or a copy where links are refused) +
  ``refs/{revision}``, so ``huggingface_hub`` finds the file offline;
* ``audio-separator`` — ``$AUDIO_SEPARATOR_MODEL_DIR`` else
  ``/tmp/audio-separator-models`` (audio-separator's default
  ``model_file_dir``), flat: UVR models and their YAML configs;
* ``stemlab`` — ``$STEMLAB_CACHE/models`` for anything else.

:func:`ensure` returns the cached path, or downloads the file when it is
missing — unless offline (``STEMLAB_OFFLINE=1``, :func:`set_offline`, a
provider's ``offline`` option or ``stemlab models … --offline``), where it
raises :class:`~stemlab.errors.ProviderUnavailable` saying what is missing,
every place it was looked for and how to fetch it on a connected machine.

A download streams into ``<name>.part`` next to its destination with a tqdm
progress bar, is checked — size against ``Content-Length`` (a truncated
transfer is refused), then sha256 against the catalog's pinned digest, else
the digest in the file name (torch hub's ``name-<sha256 prefix>.ext``
convention), else the Hugging Face ``X-Linked-Etag`` header of an LFS file,
else the ``digest`` GitHub publishes for a release asset (REST API; most UVR
and MSST files are GitHub release assets) — and only then renamed into place. A file whose sha256 nobody publishes is
kept with its digest recorded (``stemlab models list`` shows it) and marked
``unverified``. A 404 (or any HTTP error) moves on to the next URL; when all
fail, the error lists each URL and its answer. Nothing partial is ever left
where a loader would read it.

Digests of large files are computed once and remembered by (path, size,
mtime) in ``$STEMLAB_CACHE/models/digests.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._paths import cache_root as _stemlab_cache_root
from ...errors import ConfigError, ProviderUnavailable

__all__ = [
    "WeightFile",
    "CACHES",
    "cache_root",
    "torch_hub_checkpoints",
    "hf_cache_dir",
    "audio_separator_dir",
    "is_offline",
    "set_offline",
    "ensure",
    "download",
    "file_digest",
    "missing_message",
    "DownloadError",
    "OFFLINE_ENV",
]

OFFLINE_ENV = "STEMLAB_OFFLINE"
#: GitHub REST API base (tests point it at a loopback server)
GITHUB_API_ENV = "STEMLAB_GITHUB_API"
_GH_RELEASE = re.compile(r"^https?://(?P<host>[^/]+)/(?P<owner>[^/]+)/(?P<repo>[^/]+)/releases/download/"
                         r"(?P<tag>[^/]+)/(?P<name>[^/?#]+)$")
CACHES = ("torch-hub", "hf", "audio-separator", "stemlab")
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")  # torch.hub.HASH_REGEX, at least 8 hex digits
_SHA256 = re.compile(r"^[a-f0-9]{8,64}$")
_offline_override: bool | None = None
_lock = threading.Lock()


class DownloadError(ProviderUnavailable):
    """A download failed (HTTP error, truncated transfer, checksum mismatch)."""


# ----------------------------------------------------------------- places

def torch_hub_checkpoints() -> Path:
    """``torch.hub.get_dir()/checkpoints`` without importing torch unless it is
    (``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``)."""
    from .demucs import torch_hub_checkpoints as thc

    return thc()


def hf_cache_dir() -> Path:
    from .demucs import hf_cache_dir as hcd

    return hcd()


def audio_separator_dir() -> Path:
    """audio-separator's model folder: ``$AUDIO_SEPARATOR_MODEL_DIR``, else its
    default ``model_file_dir`` ``/tmp/audio-separator-models``."""
    env = os.environ.get("AUDIO_SEPARATOR_MODEL_DIR", "").strip()
    return Path(env).expanduser() if env else Path("/tmp/audio-separator-models")


def stemlab_models_dir() -> Path:
    return _stemlab_cache_root() / "models"


def cache_root(cache: str) -> Path:
    if cache == "torch-hub":
        return torch_hub_checkpoints()
    if cache == "hf":
        return hf_cache_dir()
    if cache == "audio-separator":
        return audio_separator_dir()
    if cache == "stemlab":
        return stemlab_models_dir()
    raise ConfigError(f"unknown weights cache {cache!r}; valid: {list(CACHES)}", field="cache")


# ----------------------------------------------------------------- offline switch

def is_offline() -> bool:
    """True when downloads are off: :func:`set_offline` (the ``--offline``
    flags), else ``$STEMLAB_OFFLINE`` (1/true/yes/on)."""
    if _offline_override is not None:
        return _offline_override
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def set_offline(value: bool | None) -> None:
    """Force offline (True) or online (False) for this process; None: follow the environment."""
    global _offline_override
    _offline_override = value


# ----------------------------------------------------------------- digests

def _digest_db() -> Path:
    return stemlab_models_dir() / "digests.json"


def _digest_key(p: Path) -> str:
    st = p.stat()
    return f"{p}|{st.st_size}|{st.st_mtime_ns}"


def _read_digests(db: Path) -> dict[str, Any]:
    try:
        known = json.loads(db.read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, remembered by (resolved path, size, mtime)."""
    p = Path(path).resolve()
    key = _digest_key(p)
    db = _digest_db()
    with _lock:
        known = _read_digests(db)
        if key in known:
            return str(known[key])
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        known = {k: v for k, v in known.items() if not k.startswith(f"{p}|")}
        known[key] = digest
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            tmp = db.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known, indent=0, sort_keys=True))
            os.replace(tmp, db)
        except OSError:  # a read-only cache still answers
            pass
        return digest


# ----------------------------------------------------------------- files

@dataclass(frozen=True)
class WeightFile:
    """One file of a model: its name in the cache, its URLs and its checksum.

    ``hf``: ``(repo_id, path_in_repo, revision)`` for a Hugging Face file
    (stored in the hub cache's layout); ``sha256``: full digest or a prefix
    of at least 8 hex digits (``None``: the name's ``-<prefix>.`` or the
    server's LFS etag, else unverified); ``subdir``: a folder inside the
    cache (``stemlab`` cache only)."""

    name: str
    urls: tuple[str, ...] = ()
    cache: str = "stemlab"
    sha256: str | None = None
    size: int | None = None
    hf: tuple[str, str, str] | None = None
    subdir: str = ""

    def __post_init__(self) -> None:
        if self.cache not in CACHES:
            raise ConfigError(f"weights {self.name}: unknown cache {self.cache!r}; valid: {list(CACHES)}",
                              field="cache")
        if self.sha256 is not None and not _SHA256.match(self.sha256.lower()):
            raise ConfigError(f"weights {self.name}: sha256 must be 8–64 hex digits, got {self.sha256!r}",
                              field="sha256")
        if "/" in self.name or "\\" in self.name or self.name in ("", ".", ".."):
            raise ConfigError(f"weights: bad file name {self.name!r}", field="name")
        if self.subdir and not _is_inner_path(self.subdir):
            raise ConfigError(f"weights {self.name}: subdir must be a relative path inside the cache, got "
                              f"{self.subdir!r}", field="subdir")
        if self.hf is not None:
            repo, path, rev = self.hf
            if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo) or ".." in repo:
                raise ConfigError(f"weights {self.name}: Hugging Face repo must read 'owner/name', got {repo!r}",
                                  field="hf")
            if not _is_inner_path(path):
                raise ConfigError(f"weights {self.name}: Hugging Face file must be a relative path inside the "
                                  f"repository, got {path!r}", field="hf")
            if not _REVISION.fullmatch(rev):
                raise ConfigError(f"weights {self.name}: Hugging Face revision must be a branch, tag or commit "
                                  f"name (letters, digits, '.', '_', '-'), got {rev!r}", field="hf")

    # -- where ----------------------------------------------------------------
    def hf_repo_dir(self) -> Path:
        assert self.hf is not None
        repo_id = self.hf[0]
        return hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))

    def target(self) -> Path:
        """Where a download goes (the HF snapshot path is known after it)."""
        if self.hf is not None and self.cache == "hf":
            return self.hf_repo_dir() / "snapshots" / "<commit>" / self.hf[1]
        root = cache_root(self.cache)
        return (root / self.subdir / self.name) if self.subdir else root / self.name

    def candidates(self) -> list[Path]:
        """Every place the file is looked for, in order."""
        out: list[Path] = []
        if self.hf is not None and self.cache == "hf":
            repo_dir = self.hf_repo_dir()
            ref = repo_dir / "refs" / self.hf[2]
            snaps = repo_dir / "snapshots"
            try:
                commit = ref.read_text().strip() if ref.is_file() else None
            except OSError:
                commit = None
            if commit:
                out.append(snaps / commit / self.hf[1])
            if (snaps / self.hf[2]).is_dir():  # a revision given as a commit hash
                out.append(snaps / self.hf[2] / self.hf[1])
            try:
                others = sorted((p for p in snaps.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime,
                                reverse=True)
            except OSError:
                others = []
            out += [p / self.hf[1] for p in others if p / self.hf[1] not in out]
            if not out:
                out.append(self.target())
        else:
            out.append(self.target())
        return out

    def find(self) -> Path | None:
        for p in self.candidates():
            if p.is_file():
                return p
        return None

    # -- checksum ---------------------------------------------------------------
    def expected_sha256(self) -> str | None:
        """Pinned digest, else the ``-<hex>.`` of the file name (torch hub)."""
        if self.sha256:
            return self.sha256.lower()
        m = _HASH_IN_NAME.search(self.name)
        return m.group(1) if m else None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "urls": list(self.urls), "cache": self.cache, "sha256": self.sha256,
                "size": self.size, "hf": list(self.hf) if self.hf else None, "subdir": self.subdir}


def missing_message(what: str, files: Sequence[WeightFile], *, pull: str | None = None, reason: str = "") -> str:
    """What is missing, where it was looked for and how to fetch it elsewhere."""
    missing = [f for f in files if f.find() is None]
    lines = [f"{what}: weights missing{(' (' + reason + ')') if reason else ''}: "
             + ", ".join(f.name for f in missing) + "."]
    for f in missing:
        lines.append(f"  {f.name} — looked in: " + "; ".join(str(p) for p in f.candidates()))
    lines.append("Downloads are off here (--offline / STEMLAB_OFFLINE=1). On a connected machine:")
    if pull:
        lines.append(f"  stemlab models pull {pull}   (then copy the files below to the same places here)")
    for f in missing:
        url = f.urls[0] if f.urls else "<no known URL>"
        dest = f.target()
        sha = f.expected_sha256()
        lines.append(f"  curl -L -o '{dest}' '{url}'" + (f"   (sha256 {sha}…)" if sha else ""))
    return "\n".join(lines)


# ----------------------------------------------------------------- downloading

def ensure(files: WeightFile | Sequence[WeightFile], *, what: str = "model", offline: bool | None = None,
           progress: bool = True, pull: str | None = None) -> list[Path]:
    """Paths of ``files``, downloading the missing ones unless offline."""
    items = [files] if isinstance(files, WeightFile) else list(files)
    out: list[Path] = []
    off = is_offline() if offline is None else bool(offline)
    missing = [f for f in items if f.find() is None]
    if missing and off:
        raise ProviderUnavailable(missing_message(what, missing, pull=pull), reason="offline")
    for f in items:
        p = f.find()
        if p is None:
            p = download(f, progress=progress, what=what)
        out.append(p)
    return out


def _client(timeout: float) -> Any:
    import httpx

    return httpx.Client(follow_redirects=True, timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
                        headers={"User-Agent": "stemlab-models", "Accept-Encoding": "identity"})


#: a revision (branch, tag, commit) that stays one path component
_REVISION = re.compile(r"[A-Za-z0-9][\w.-]{0,99}")
_COMMIT = re.compile(r"[0-9a-f]{40}")


def _is_inner_path(p: str) -> bool:
    """A relative path with no ``..``/empty/absolute part: stays inside the folder it is joined to."""
    parts = p.replace("\\", "/").split("/")
    return not p.startswith(("/", "\\")) and ":" not in p and all(x not in ("", ".", "..") for x in parts)


def _inside(path: Path, root: Path) -> Path:
    """``path`` if it resolves inside ``root`` (no ``..``, no link out), else a DownloadError."""
    r, p = root.resolve(), path.resolve()
    if p != r and r not in p.parents:
        raise DownloadError(f"refusing to write {path}: outside {root}", file=path.name)
    return path


def download(f: WeightFile, *, progress: bool = True, what: str = "model", timeout: float = 60.0,
             on_bytes: Callable[[int, int | None], None] | None = None) -> Path:
    """Fetch ``f`` from its URLs (first that works), verify it and put it in
    its cache; returns the final path. Raises :class:`DownloadError`."""
    import httpx

    if not f.urls:
        raise DownloadError(f"{what}: no URL known for {f.name}; place it at {f.target()}")
    tried: list[str] = []
    for url in f.urls:
        try:
            return _download_one(f, url, progress=progress, timeout=timeout, on_bytes=on_bytes)
        except _HttpStatus as e:
            tried.append(f"{url} → HTTP {e.status}")
            continue
        except httpx.HTTPError as e:
            tried.append(f"{url} → {type(e).__name__}: {e}")
            continue
        except DownloadError as e:  # truncated, mis-sized or corrupt here: the next mirror may serve it whole
            tried.append(f"{url} → {str(e).splitlines()[0]}")
            continue
    raise DownloadError(f"{what}: could not download {f.name}:\n  " + "\n  ".join(tried), file=f.name,
                        tried=tried)


class _HttpStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


_PROVENANCE_HEADERS = ("x-linked-etag", "x-repo-commit", "etag", "x-linked-size")


def _provenance_headers(r: Any) -> dict[str, str]:
    """The first value of each provenance header along the redirect chain."""
    headers: dict[str, str] = {}
    for resp in (*r.history, r):
        for k in _PROVENANCE_HEADERS:
            if k in resp.headers and k not in headers:
                headers[k] = resp.headers[k]
    return headers


def _check_download(f: WeightFile, url: str, *, got: int, total: int | None, digest: str,
                    headers: Mapping[str, str], timeout: float) -> tuple[str | None, str]:
    """Raise :class:`DownloadError` for a truncated, mis-sized or corrupt
    download; else ``(expected sha256 or None, where it came from)``."""
    if total is not None and got != total:
        raise DownloadError(f"download of {f.name} from {url} truncated: got {got} of {total} bytes "
                            "(nothing was kept; run again)", file=f.name, url=url, got=got, expected=total)
    if f.size is not None and got != f.size:
        raise DownloadError(f"download of {f.name} from {url}: {got} bytes, the catalog says {f.size} "
                            "(nothing was kept)", file=f.name, url=url)
    expected = f.expected_sha256()
    source = "catalog" if f.sha256 else ("file name" if expected else "")
    if expected is None:
        etag = headers.get("x-linked-etag", "").strip('"').lower()
        if re.fullmatch(r"[a-f0-9]{64}", etag):
            expected, source = etag, "server LFS etag"
    if expected is None:
        gh = github_release_digest(url, timeout=timeout)
        if gh is not None:
            expected, source = gh, "GitHub release asset digest"
    if expected is not None and not digest.startswith(expected):
        raise DownloadError(f"download of {f.name} from {url}: checksum mismatch — sha256 {digest}, expected "
                            f"{expected}{'…' if len(expected) < 64 else ''} ({source}); the file was deleted",
                            file=f.name, url=url, sha256=digest, expected=expected)
    return expected, source


def _download_one(f: WeightFile, url: str, *, progress: bool, timeout: float,
                  on_bytes: Callable[[int, int | None], None] | None) -> Path:
    staging_dir = f.hf_repo_dir() / "blobs" if (f.hf is not None and f.cache == "hf") else f.target().parent
    staging_dir.mkdir(parents=True, exist_ok=True)
    part = staging_dir / f"{f.name}.{os.getpid()}.{threading.get_ident()}.part"
    h = hashlib.sha256()
    got = 0
    headers: dict[str, str] = {}
    try:
        with _client(timeout) as client, client.stream("GET", url) as r:
            if r.status_code != 200:
                raise _HttpStatus(r.status_code)
            headers = _provenance_headers(r)
            declared = r.headers.get("content-length")
            total = int(declared) if declared and declared.isdigit() else None
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f.name, leave=True,
                           file=sys.stderr)
            try:
                with open(part, "wb") as out:
                    try:
                        for block in r.iter_bytes(1 << 16):
                            out.write(block)
                            h.update(block)
                            got += len(block)
                            if bar is not None:
                                bar.update(len(block))
                            if on_bytes is not None:
                                on_bytes(got, total)
                    except Exception as e:  # connection cut mid-body: report as truncation below
                        import httpx

                        if not isinstance(e, (httpx.HTTPError, OSError)):
                            raise
                        got = max(got, int(getattr(r, "num_bytes_downloaded", 0) or 0))
                        coded = r.headers.get("content-encoding", "identity").lower() not in ("", "identity")
                        if total is None or coded:  # a decode error of a complete body is no truncation
                            raise DownloadError(f"download of {f.name} from {url} failed after {got} bytes: "
                                                f"{type(e).__name__}: {e}", file=f.name, url=url) from None
            finally:
                if bar is not None:
                    bar.close()
        digest = h.hexdigest()
        encoded = r.headers.get("content-encoding", "identity").lower() not in ("", "identity")
        wire = int(getattr(r, "num_bytes_downloaded", 0) or 0) if encoded else got
        if encoded and total is not None and wire != total:  # Content-Length counts the encoded bytes
            raise DownloadError(f"download of {f.name} from {url} truncated: got {wire} of {total} encoded bytes "
                                "(nothing was kept; run again)", file=f.name, url=url, got=wire, expected=total)
        expected, source = _check_download(f, url, got=got, total=None if encoded else total, digest=digest,
                                           headers=headers, timeout=timeout)
        final = _place(f, part, digest, headers)
        _record(final, digest, verified=expected is not None, source=source or "unverified", url=url)
        return final
    finally:
        if part.exists():
            part.unlink()


def github_release_digest(url: str, *, timeout: float = 30.0) -> str | None:
    """The sha256 GitHub publishes for a release asset (``digest`` of the
    asset in ``GET /repos/{owner}/{repo}/releases/tags/{tag}``), or None when
    the URL is not a release download, the API does not answer or the asset
    has no digest (assets uploaded before GitHub started recording them)."""
    m = _GH_RELEASE.match(url)
    if m is None:
        return None
    api = os.environ.get(GITHUB_API_ENV, "").rstrip("/")
    if not api:
        if m["host"] != "github.com":
            return None
        api = "https://api.github.com"
    try:
        with _client(timeout) as client:
            r = client.get(f"{api}/repos/{m['owner']}/{m['repo']}/releases/tags/{m['tag']}",
                           headers={"Accept": "application/vnd.github+json"})
            if r.status_code != 200:
                return None
            for a in r.json().get("assets", []):
                d = str(a.get("digest") or "")
                if a.get("name") == m["name"] and d.startswith("sha256:") and re.fullmatch(r"[a-f0-9]{64}", d[7:]):
                    return d[7:]
    except Exception:  # the API is a bonus: no answer means "unverified", not a failed download
        return None
    return None


def _place(f: WeightFile, part: Path, digest: str, headers: Mapping[str, str]) -> Path:
    if f.hf is not None and f.cache == "hf":
        repo_dir = f.hf_repo_dir()
        blob = repo_dir / "blobs" / digest
        os.replace(part, blob)
        commit = headers.get("x-repo-commit", "").strip().lower()
        if not _COMMIT.fullmatch(commit):  # a server's header names a folder: only a commit hash may
            commit = f.hf[2]
        snap = _inside(repo_dir / "snapshots" / commit / f.hf[1], repo_dir)
        snap.parent.mkdir(parents=True, exist_ok=True)
        if snap.exists() or snap.is_symlink():
            snap.unlink()
        rel = os.path.relpath(blob, snap.parent)
        try:
            os.symlink(rel, snap)
        except OSError:  # no symlinks (some filesystems): a copy, as huggingface_hub does
            shutil.copyfile(blob, snap)
        refs = repo_dir / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        if commit != f.hf[2]:
            (refs / f.hf[2]).write_text(commit)
        return snap
    dest = _inside(f.target(), cache_root(f.cache))
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, dest)
    return dest


def _record(path: Path, digest: str, *, verified: bool, source: str, url: str) -> None:
    """Remember the digest (so it is not recomputed) and how it was checked."""
    try:
        key = _digest_key(path.resolve())
        db = _digest_db()
        with _lock:
            known = _read_digests(db)
            known[key] = digest
            db.parent.mkdir(parents=True, exist_ok=True)
            db.write_text(json.dumps(known, indent=0, sort_keys=True))
        prov = db.parent / "downloads.jsonl"
        with open(prov, "a") as fh:
            fh.write(json.dumps({"path": str(path), "sha256": digest, "verified": verified, "checked_against": source,
                                 "url": url, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
    except OSError:
        pass


def download_log() -> list[dict[str, Any]]:
    """Every download recorded in ``$STEMLAB_CACHE/models/downloads.jsonl``."""
    p = stemlab_models_dir() / "downloads.jsonl"
    try:
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def present(files: Iterable[WeightFile]) -> bool:
    return all(f.find() is not None for f in files)
