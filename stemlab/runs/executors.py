"""Where local providers run: worker threads (default) or a Ray cluster.

The runner's driver process always owns the ledger, the caches, budgets and
the remote services' clients; an executor only turns ``(provider, track)``
into a :class:`~stemlab.types.Separation`. So the kill/resume guarantees are
the same whichever executor runs the models.

Ray (``pip install 'stemlab[ray]'``): one actor per provider configuration
holds the model loaded once (``actors_per_provider`` copies, each with
``num_cpus``/``num_gpus``); the driver sends the decoded mixture (and the
references for oracles) through Ray's object store and awaits the result.
Remote-service rate limits stay global because every request is made by the
driver (see :class:`RayRateLimiter` for limits shared by several drivers).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Mapping
from typing import Any, Protocol

from ..errors import ConfigError, ProviderError
from ..providers.base import Provider
from ..types import Separation, Track

__all__ = ["LocalExecutor", "ThreadExecutor", "RayExecutor", "make_executor", "RayRateLimiter"]

log = logging.getLogger("stemlab.runs")


class LocalExecutor(Protocol):
    """Where the runner sends a local provider's separations."""

    async def separate(self, provider: Provider, track: Track) -> Separation: ...
    def close(self) -> None: ...


class ThreadExecutor:
    """Local providers in worker threads of the driver process."""

    name = "local"

    async def separate(self, provider: Provider, track: Track) -> Separation:
        return await asyncio.to_thread(provider.separate, track)

    def close(self) -> None:
        pass


def _payload(provider: Provider, track: Track) -> dict[str, Any]:
    refs = None
    if provider.needs_references and track.references is not None:
        refs = {k: v for k, v in track.references.items()}
    return {"name": track.name, "mixture": track.mixture, "sample_rate": track.sample_rate, "references": refs,
            "dataset": track.dataset, "suno_clip_id": track.suno_clip_id}


def _actor_cls():
    import ray

    @ray.remote
    class ProviderActor:
        """Holds one provider (model loaded once) and separates tracks."""

        def __init__(self, spec: Mapping[str, Any], cls_path: str) -> None:
            import importlib

            from stemlab.providers import create, register

            mod, _, name = cls_path.partition(":")
            cls = getattr(importlib.import_module(mod), name)
            register(cls)  # third-party / runtime-registered providers too
            self.provider = create(dict(spec))
            self.host = os.uname().nodename
            self.pid = os.getpid()

        def separate(self, payload: Mapping[str, Any]):
            from stemlab.types import Track

            t = Track.from_arrays(payload["name"], payload["mixture"], payload["sample_rate"],
                                  payload["references"], dataset=payload["dataset"],
                                  suno_clip_id=payload["suno_clip_id"])
            t0 = time.perf_counter()
            sep = self.provider.separate(t)
            prov = dict(sep.provenance)
            prov.update({"ray_node": self.host, "ray_pid": self.pid, "actor_seconds": time.perf_counter() - t0})
            return sep.replace(provenance=prov)

        def where(self) -> tuple[str, int]:
            return self.host, self.pid

    return ProviderActor


class RayExecutor:
    """Local providers as Ray actors.

    ``address``: ``None``/"local" starts a local Ray instance with
    ``num_cpus``; "auto" or "ray://host:10001" joins a cluster.
    ``num_cpus``/``num_gpus``: resources per actor; ``actors_per_provider``:
    parallel copies of each model."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        actors_per_provider: int = 1,
        init_cpus: int | None = None,
        runtime_env: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("executor 'ray' needs Ray: pip install 'stemlab[ray]'", field="executor") from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": False}
            if address not in (None, "local"):
                kw["address"] = address
            elif init_cpus is not None:
                kw["num_cpus"] = int(init_cpus)
            if runtime_env:
                kw["runtime_env"] = dict(runtime_env)
            ray.init(**kw)
            self._started = True
        self.num_cpus = float(num_cpus)
        self.num_gpus = float(num_gpus)
        self.copies = max(1, int(actors_per_provider))
        self._actors: dict[str, list[Any]] = {}
        self._rr: dict[str, Any] = {}
        self._cls = _actor_cls()

    def _spec(self, provider: Provider) -> dict[str, Any]:
        return {"family": provider.family, "variant": provider.variant, "params": dict(provider.config),
                "options": {k: v for k, v in provider.options.items() if k != "api_key"}}

    def actors_for(self, provider: Provider) -> list[Any]:
        key = f"{provider.family}|{provider.params_hash}|{sorted(provider.options.items())}"
        if key not in self._actors:
            gpus = self.num_gpus
            opts = {"num_cpus": self.num_cpus, "num_gpus": gpus}
            cls_path = f"{type(provider).__module__}:{type(provider).__qualname__}"
            self._actors[key] = [self._cls.options(**opts).remote(self._spec(provider), cls_path)
                                 for _ in range(self.copies)]
            self._rr[key] = itertools.cycle(range(self.copies))
        return self._actors[key]

    async def separate(self, provider: Provider, track: Track) -> Separation:
        actors = self.actors_for(provider)
        key = next(k for k, v in self._actors.items() if v is actors)
        actor = actors[next(self._rr[key])]
        payload = self._ray.put(_payload(provider, track))
        try:
            return await actor.separate.remote(payload)
        except self._ray.exceptions.RayTaskError as e:
            cause = e.as_instanceof_cause() if hasattr(e, "as_instanceof_cause") else e
            if isinstance(cause, ProviderError):
                raise cause from None
            raise ProviderError(
                f"{provider.id}: Ray task failed: {str(e).splitlines()[0]}", provider=provider.id
            ) from None

    def close(self) -> None:
        for actors in self._actors.values():
            for a in actors:
                try:
                    self._ray.kill(a)
                except Exception:  # pragma: no cover - already dead
                    pass
        self._actors.clear()
        if self._started:
            self._ray.shutdown()


class RayRateLimiter:
    """A named Ray actor shared by every driver on a cluster: at most
    ``rate`` acquisitions per second per service (token bucket)."""

    def __init__(self, service: str, rate: float) -> None:
        import ray

        @ray.remote(num_cpus=0)
        class _Bucket:
            def __init__(self, rate: float) -> None:
                self.rate = rate
                self.next = time.monotonic()

            def reserve(self) -> float:
                now = time.monotonic()
                t = max(now, self.next)
                self.next = t + 1.0 / self.rate
                return t - now

        # (ray.remote made _Bucket an actor class, which mypy cannot see)
        self._actor = _Bucket.options(name=f"stemlab-limit-{service}", get_if_exists=True,  # type: ignore[attr-defined]
                                      lifetime="detached").remote(rate)

    async def acquire(self) -> None:
        wait = await self._actor.reserve.remote()
        if wait > 0:
            await asyncio.sleep(wait)


def make_executor(kind: str, options: Mapping[str, Any] | None = None) -> LocalExecutor:
    opts = dict(options or {})
    if kind == "local":
        return ThreadExecutor()
    if kind == "ray":
        return RayExecutor(**opts)
    raise ConfigError(f"executor must be 'local' or 'ray', got {kind!r}", field="executor")
