"""MVSEP Quality Checker: put a stemlab-evaluated model on MVSEP's public
leaderboard and compare (seed 002, "Quality Checker").

The checker scores a zip of separated files of one of its datasets (you
download the dataset from mvsep.com; each file is ``<song>_<stem>.wav``)
and lists entries per dataset type on a leaderboard sorted by a stem's SDR::

    qc = QualityChecker(MVSep(api_key=…))           # or create("mvsep", base_url=sandbox)
    entry = qc.add(zip_bytes, algo_name="stemlab oracle", main_text="IRM", password="…")
    qc.entry(entry["id"])["proc"]                    # 1 once scored; sdr_* fields
    qc.leaderboard("synth", sort="sdr_vocals")
    qc.delete(entry["id"], password="…")

Transport (retries, rate limit, redaction) is the MVSEP provider's. The
entry password is registered as a secret: it never appears in logs or
exceptions. ``add`` is a paid-like, non-idempotent POST: it is retried only
when the service certainly did not act.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..._secrets import register_secret
from ...audio import encode_bytes
from ...errors import ConfigError, ProviderOutputError, ProviderRejected
from .provider import MVSep

__all__ = ["QualityChecker", "DATASET_TYPES", "dataset_type", "build_zip"]

#: Quality Checker dataset names → ``dataset_type`` (seed 002)
DATASET_TYPES: Mapping[str, int] = {
    "synth": 0, "multi": 1, "piano": 2, "lead_back_vocals": 3, "guitar": 4, "medley_vox": 5, "strings": 6,
    "wind": 7, "dnr_v3": 8, "super_resolution": 9, "drums_5_stems": 10, "male_female": 11,
}


def dataset_type(value: int | str) -> int:
    """A dataset type by number or name (``"synth"``, ``"multi"`` …)."""
    if isinstance(value, bool):
        raise ConfigError(f"quality checker: dataset_type expects a name or 0–11, got {value!r}", field="dataset_type")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        n = int(value)
        if 0 <= n <= 11:
            return n
    elif isinstance(value, str) and value.strip().lower().replace("/", "_").replace(" ", "_") in DATASET_TYPES:
        return DATASET_TYPES[value.strip().lower().replace("/", "_").replace(" ", "_")]
    raise ConfigError(f"quality checker: unknown dataset_type {value!r}; valid: {sorted(DATASET_TYPES)} or 0–11",
                      field="dataset_type")


def build_zip(songs: Mapping[str, Mapping[str, np.ndarray]], sample_rate: int, *, fmt: str = "wav") -> bytes:
    """The zip the checker expects: ``<song>_<stem>.<fmt>`` for every song
    and stem (arrays ``(channels, samples)`` float at ``sample_rate``;
    16-bit PCM). ``songs[name]`` may be a :class:`~stemlab.types.Stems`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for song, stems in songs.items():
            items = stems.items() if hasattr(stems, "items") else cast(Iterable[tuple[str, Any]], stems)
            for stem, audio in items:
                a = np.asarray(audio, dtype=np.float32)
                zf.writestr(f"{song}_{stem}.{fmt}", encode_bytes(a if a.ndim == 2 else a[None], sample_rate, fmt))
    return buf.getvalue()


class QualityChecker:
    """Client of ``/api/quality_checker/*`` on an :class:`MVSep` provider's host and token."""

    def __init__(self, provider: MVSep) -> None:
        if not isinstance(provider, MVSep):
            raise ConfigError(f"QualityChecker: expects an MVSep provider, got {type(provider).__name__}",
                              field="provider")
        self.provider = provider

    def __repr__(self) -> str:
        return f"<QualityChecker {self.provider!r}>"

    @property
    def _label(self) -> str:
        return f"{self.provider.id} quality checker"

    async def _get(self, path: str, params: Mapping[str, Any], what: str) -> Any:
        p = self.provider
        resp = await p._client().request("GET", f"/quality_checker/{path}", params=dict(params), auth=False,
                                         what=f"{self._label}: {what}")
        return resp.json()

    # ---------------------------------------------------------------- async
    async def aleaderboard(self, dataset: int | str = 0, *, start: int = 0, limit: int = 10,
                           algo_name_filter: str | None = None, sort: str | None = None) -> dict[str, Any]:
        """``{data: [entries], dataset_type, sortables, sort}``, best first by ``sort``."""
        q: dict[str, Any] = {"dataset_type": dataset_type(dataset), "start": int(start),
                             "limit": max(1, min(20, int(limit)))}
        if algo_name_filter:
            q["algo_name_filter"] = algo_name_filter
        if sort:
            q["sort"] = sort
        body = await self._get("leaderboard", q, "leaderboard")
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ProviderOutputError(
                f"{self._label}: leaderboard answer lacks a 'data' list", provider=self.provider.id
            )
        return body

    async def aqueue(self, *, start: int = 0, limit: int = 10) -> list[dict[str, Any]]:
        """Recent entries of every user (newest first)."""
        body = await self._get("queue", {"start": int(start), "limit": max(1, min(20, int(limit)))}, "queue")
        items = body.get("data") if isinstance(body, dict) else body
        return [x for x in items or [] if isinstance(x, dict)]

    async def aentry(self, entry_id: int) -> dict[str, Any]:
        """One entry: ``proc`` (0 queued, 1 processed), ``msg`` ("OK" or the
        error), ``metrics`` and ``sdr_<stem>``."""
        body = await self._get("entry", {"id": int(entry_id)}, f"entry {entry_id}")
        if isinstance(body, list):
            body = body[0] if body else None
        if isinstance(body, dict) and isinstance(body.get("data"), dict) and "id" not in body:
            body = body["data"]
        if not isinstance(body, dict) or "id" not in body:
            raise ProviderOutputError(f"{self._label}: entry {entry_id}: unexpected answer", provider=self.provider.id)
        return body

    async def aadd(self, zip_file: bytes | str | Path, *, algo_name: str, main_text: str, password: str,
                   dataset: int | str = 0, ensemble: bool = False) -> dict[str, Any]:
        """Submit an entry; returns ``{"id", "link"}``. ``password`` is needed
        to delete it later."""
        for name, v in (("algo_name", algo_name), ("main_text", main_text), ("password", password)):
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(f"quality checker add: {name} is required (a non-empty string)", field=name)
        register_secret(password)
        data = Path(zip_file).read_bytes() if isinstance(zip_file, (str, Path)) else bytes(zip_file)
        if not data.startswith(b"PK"):
            raise ConfigError("quality checker add: zip_file is not a zip archive", field="zip_file")
        p = self.provider
        p._require_key()
        form = {"algo_name": algo_name, "main_text": main_text, "dataset_type": str(dataset_type(dataset)),
                "ensemble": "1" if ensemble else "0", "password": password}
        resp = await p._client().request("POST", "/quality_checker/add", data=form,
                                         files={"zipfile": ("stemlab_entry.zip", data, "application/zip")},
                                         retry="safe", upload=True, what=f"{self._label}: add entry")
        body = p._body(resp)
        raw_out = body.get("data")
        out = raw_out if isinstance(raw_out, dict) else {}
        if "id" not in out:
            raise ProviderOutputError(f"{self._label}: add answered without an entry id", provider=p.id)
        return dict(out)

    async def adelete(self, entry_id: int, *, password: str) -> bool:
        """Delete an entry; True when deleted, :class:`ProviderRejected`
        (with the service's message) when refused."""
        register_secret(password)
        p = self.provider
        resp = await p._client().request("POST", "/quality_checker/delete",
                                         data={"id": str(int(entry_id)), "password": password}, auth=False,
                                         retry="safe", accept_status=frozenset({400, 403, 404}),
                                         what=f"{self._label}: delete entry {entry_id}")
        body = resp.json_or_none()
        if isinstance(body, dict) and body.get("success") is True:
            return True
        _, msg = p.parse_error(resp)
        raise ProviderRejected(f"{self._label}: entry {entry_id} not deleted ({msg or 'no reason given'})",
                               provider=p.id, entry=int(entry_id))

    async def await_scored(self, entry_id: int, *, timeout: float = 3600.0, interval: float = 30.0) -> dict[str, Any]:
        """Poll :meth:`aentry` (on the provider's clock) until ``proc == 1``."""
        clock = self.provider.clock
        deadline = clock.now() + timeout
        while True:
            e = await self.aentry(entry_id)
            if int(e.get("proc") or 0) == 1:
                return e
            if clock.now() >= deadline:
                raise ProviderOutputError(f"{self._label}: entry {entry_id} not processed after {timeout:.0f} s",
                                          provider=self.provider.id)
            await clock.sleep(interval)

    # ----------------------------------------------------------------- sync
    def _run(self, coro: Any) -> Any:
        return self.provider._run(coro)

    def leaderboard(self, dataset: int | str = 0, **kw: Any) -> dict[str, Any]:
        return self._run(self.aleaderboard(dataset, **kw))

    def queue(self, **kw: Any) -> list[dict[str, Any]]:
        return self._run(self.aqueue(**kw))

    def entry(self, entry_id: int) -> dict[str, Any]:
        return self._run(self.aentry(entry_id))

    def add(self, zip_file: bytes | str | Path, **kw: Any) -> dict[str, Any]:
        return self._run(self.aadd(zip_file, **kw))

    def delete(self, entry_id: int, *, password: str) -> bool:
        return self._run(self.adelete(entry_id, password=password))

    def wait_scored(self, entry_id: int, **kw: Any) -> dict[str, Any]:
        return self._run(self.await_scored(entry_id, **kw))
