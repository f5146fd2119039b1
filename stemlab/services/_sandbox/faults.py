"""Fault injection for sandboxes, configured per endpoint.

A fault names a sandbox *endpoint* (each emulator documents its names, e.g.
``create``, ``status``, ``upload``, ``download``; ``job``, ``output`` and
``webhook`` for faults that act on jobs, produced files and webhook
deliveries; ``*`` matches any endpoint) and a *kind*, with optional
arguments, a count, a probability and a number of matching events to let
through first.

String form (CLI ``--faults``; several separated by ``;``)::

    ENDPOINT:KIND[(arg=value,…)][*COUNT][@PROBABILITY][+AFTER]

    status:http_429(retry_after=2)*3     three 429s with Retry-After: 2
    status:http_429(retry_after=date)    Retry-After as an HTTP-date
    create:drop                          run the handler, then cut the answer
    create:delay(seconds=1.5)            answer 1.5 real seconds late
    download:truncate@0.3                30 % of downloads cut short
    status:http_503*2+1                  let one through, then two 503s
    job:fail(code=INVALID_AUDIO)         the next job fails
    output:wrong_rate(rate=22050)        stems come back at 22.05 kHz
    seed=7                               RNG seed for probabilities

Hostile answers (a careless or malicious service, a broken proxy or CDN)::

    status:gzip_bomb(mb=200)             a 200 answer whose body is a small gzip
                                         stream (Content-Encoding: gzip) that
                                         inflates to 200 MB; the handler ran
    download:gzip_bomb(mb=200)           the same in place of a stem file
    status:huge(mb=300)                  a 300-MB body streamed lazily (64-KiB
                                         chunks, no Content-Length unless
                                         length=true; never built in memory on
                                         the server either); the handler ran
    download:huge(mb=64,length=true)     a download beyond max_download_bytes,
                                         announced by its Content-Length
    download:drip(seconds=0.5)           the real answer, one byte every 0.5 s
                                         (stops after 1024 bytes or 60 s, or
                                         when the client hangs up)
    create:redirect(to=http://127.0.0.1:9999,status=307)
                                         a redirect to another origin instead of
                                         an answer (the handler does not run);
                                         the Location keeps the request's path
                                         and query (keep=false: ``to`` alone) —
                                         what a host move or a hijacked proxy
                                         answers; without ``to``, the sandbox
                                         itself (a same-origin redirect)
    output:non_audio                     every stem file of the next job is a
                                         200 HTML page (text/html), not audio

A "lying Content-Length" needs no kind of its own: ``truncate`` declares the
full length and sends part of the body, which is all a server speaking valid
HTTP/1.1 can do (h11, under uvicorn, refuses to send more bytes than the
declared length, and a shorter body can only end with a closed connection).
A service that ignores ``Idempotency-Key`` (every create is new and charged
again) is a sandbox constructor option, ``honor_idempotency=False``, combined
with ``create:drop`` (the create is processed, its answer cut).

Also accepted: a list of dicts (``{"endpoint", "kind", "count",
"probability", "after", "args"}``) or a path to a JSON/YAML file holding one.
Without count and probability a fault fires once; with only a probability it
fires on every matching event with that probability.
"""

from __future__ import annotations

import json
import random
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ...errors import ConfigError

__all__ = ["Fault", "FaultPlan", "RESPONSE_KINDS", "JOB_KINDS", "OUTPUT_KINDS", "WEBHOOK_KINDS", "HOSTILE_KINDS", "KINDS",
           "KIND_ARGS"]

#: act on one HTTP answer
RESPONSE_KINDS = frozenset({"http_429", "http_500", "http_502", "http_503", "http_504", "drop", "delay",
                            "truncate", "expire", "corrupt", "gzip_bomb", "huge", "drip", "redirect"})
#: response kinds that replace or slow the answer of a handler that ran (hostile services)
HOSTILE_KINDS = frozenset({"gzip_bomb", "huge", "drip", "redirect", "non_audio"})
#: act on a job when it is created
JOB_KINDS = frozenset({"fail", "stuck"})
#: act on the files a job produces
OUTPUT_KINDS = frozenset({"wrong_rate", "wrong_channels", "wrong_length", "non_audio"})
#: act on webhook deliveries
WEBHOOK_KINDS = frozenset({"webhook_duplicate", "webhook_missing", "webhook_bad_signature"})
KINDS = RESPONSE_KINDS | JOB_KINDS | OUTPUT_KINDS | WEBHOOK_KINDS

_NUM = (int, float)
#: the arguments each kind takes: name → (check, what is expected). A fault
#: with an unknown argument or a value of the wrong type is refused when parsed.
_HTTP_ARGS: dict[str, tuple[Any, str]] = {
    "retry_after": (lambda v: v == "date" or (isinstance(v, _NUM) and not isinstance(v, bool) and v >= 0),
                    "seconds ≥ 0 or 'date'"),
    "seconds": (lambda v: isinstance(v, _NUM) and not isinstance(v, bool) and v >= 0, "seconds ≥ 0"),
}
_POS = (lambda v: isinstance(v, _NUM) and not isinstance(v, bool) and v > 0, "a number > 0")
_STR = (lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool), "a string")
KIND_ARGS: dict[str, dict[str, tuple[Any, str]]] = {
    **{k: _HTTP_ARGS for k in ("http_429", "http_500", "http_502", "http_503", "http_504")},
    "drop": {}, "expire": {}, "corrupt": {}, "stuck": {},
    "delay": {"seconds": (_HTTP_ARGS["seconds"][0], "seconds ≥ 0")},
    "truncate": {"fraction": (lambda v: isinstance(v, _NUM) and not isinstance(v, bool) and 0 <= v < 1,
                              "a fraction in [0, 1)")},
    "fail": {"code": _STR, "message": _STR},
    "wrong_rate": {"rate": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1000 <= v <= 384000,
                            "an int in 1000..384000 (Hz)")},
    "wrong_channels": {"channels": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8,
                                    "an int in 1..8")},
    "wrong_length": {"factor": _POS, "stem": _STR},
    "webhook_duplicate": {}, "webhook_missing": {}, "webhook_bad_signature": {},
    "gzip_bomb": {"mb": (lambda v: isinstance(v, _NUM) and not isinstance(v, bool) and 0 < v <= 4096,
                         "megabytes in (0, 4096]")},
    "huge": {"mb": (lambda v: isinstance(v, _NUM) and not isinstance(v, bool) and 0 < v <= 65536,
                    "megabytes in (0, 65536]"),
             "length": (lambda v: isinstance(v, bool), "true or false")},
    "drip": {"seconds": (lambda v: isinstance(v, _NUM) and not isinstance(v, bool) and 0 < v <= 60,
                         "seconds per byte in (0, 60]")},
    "redirect": {"to": (lambda v: isinstance(v, str) and bool(re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", v)),
                        "an http(s) URL without query"),
                 "status": (lambda v: v in (301, 302, 303, 307, 308) and not isinstance(v, bool),
                            "one of 301, 302, 303, 307, 308"),
                 "keep": (lambda v: isinstance(v, bool), "true or false")},
    "non_audio": {},
}

_RE = re.compile(
    r"^\s*(?P<endpoint>[\w.*-]+)\s*:\s*(?P<kind>\w+)\s*(?:\((?P<args>[^)]*)\))?"
    r"\s*(?:\*\s*(?P<count>\d+))?\s*(?:@\s*(?P<prob>[0-9.]+))?\s*(?:\+\s*(?P<after>\d+))?\s*$"
)


def _value(v: str) -> Any:
    v = v.strip()
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    return v


@dataclass
class Fault:
    endpoint: str
    kind: str
    count: int | None = None
    probability: float | None = None
    after: int = 0
    args: dict[str, Any] = field(default_factory=dict)
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"sandbox fault {self.endpoint}:{self.kind}: unknown kind; valid: {sorted(KINDS)}",
                              field="faults")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ConfigError(f"sandbox fault {self.endpoint}:{self.kind}: probability must be in [0, 1], "
                              f"got {self.probability}", field="faults")
        if self.count is None and self.probability is None:
            self.count = 1
        if self.count is not None and self.count < 0:
            raise ConfigError(f"sandbox fault {self.endpoint}:{self.kind}: count must be ≥ 0", field="faults")
        allowed = KIND_ARGS.get(self.kind, {})
        for k, v in self.args.items():
            if k not in allowed:
                raise ConfigError(f"sandbox fault {self.endpoint}:{self.kind}: unknown argument {k!r}; valid: "
                                  f"{sorted(allowed) or 'none'}", field="faults")
            ok, what = allowed[k]
            if not ok(v):
                raise ConfigError(f"sandbox fault {self.endpoint}:{self.kind}: argument {k}={v!r}, expected {what}",
                                  field="faults")

    @classmethod
    def parse(cls, text: str) -> "Fault":
        m = _RE.match(text)
        if not m:
            raise ConfigError(
                f"sandbox fault {text!r}: expected ENDPOINT:KIND[(arg=value,…)][*COUNT][@PROB][+AFTER]",
                field="faults",
            )
        args: dict[str, Any] = {}
        if m["args"]:
            for part in m["args"].split(","):
                if not part.strip():
                    continue
                k, eq, v = part.partition("=")
                if not eq:
                    raise ConfigError(f"sandbox fault {text!r}: argument {part!r} is not key=value", field="faults")
                args[k.strip()] = _value(v)
        return cls(
            endpoint=m["endpoint"], kind=m["kind"], args=args,
            count=int(m["count"]) if m["count"] else None,
            probability=float(m["prob"]) if m["prob"] else None,
            after=int(m["after"]) if m["after"] else 0,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Fault":
        unknown = sorted(set(d) - {"endpoint", "kind", "count", "probability", "after", "args"})
        if unknown or "endpoint" not in d or "kind" not in d:
            raise ConfigError(f"sandbox fault {dict(d)!r}: expected keys endpoint, kind "
                              "[, count, probability, after, args]", field="faults")
        return cls(endpoint=str(d["endpoint"]), kind=str(d["kind"]), count=d.get("count"),
                   probability=d.get("probability"), after=int(d.get("after") or 0), args=dict(d.get("args") or {}))

    def describe(self) -> str:
        a = f"({','.join(f'{k}={v}' for k, v in self.args.items())})" if self.args else ""
        c = f"*{self.count}" if self.count is not None else ""
        p = f"@{self.probability:g}" if self.probability is not None else ""
        after = f"+{self.after}" if self.after else ""
        return f"{self.endpoint}:{self.kind}{a}{c}{p}{after}"


class FaultPlan:
    """The faults of one sandbox; thread-safe, seeded."""

    def __init__(self, faults: Iterable[Fault | Mapping[str, Any] | str] = (), seed: int = 0) -> None:
        self._lock = threading.Lock()
        self.seed = seed
        self._rng = random.Random(seed)
        self.faults: list[Fault] = []
        for f in faults:
            self.add(f)

    @classmethod
    def parse(cls, spec: "FaultPlan | str | Sequence[Any] | Mapping[str, Any] | None", seed: int = 0) -> "FaultPlan":
        if isinstance(spec, FaultPlan):
            return spec
        if spec is None:
            return cls(seed=seed)
        if isinstance(spec, Mapping):
            return cls(spec.get("faults", ()), seed=int(spec.get("seed", seed)))
        if isinstance(spec, str):
            text = spec.strip()
            p = Path(text)
            if text and p.suffix.lower() in (".json", ".yaml", ".yml") and p.is_file():
                raw = p.read_text()
                data = json.loads(raw) if p.suffix.lower() == ".json" else _yaml(raw)
                return cls.parse(data, seed)
            items: list[str] = [s for s in re.split(r";|\n", text) if s.strip()]
        else:
            items = list(spec)  # type: ignore[arg-type]
        plan = cls(seed=seed)
        for it in items:
            if isinstance(it, str) and it.strip().startswith("seed="):
                plan.reseed(int(it.split("=", 1)[1]))
            else:
                plan.add(it)
        return plan

    def reseed(self, seed: int) -> None:
        with self._lock:
            self.seed = seed
            self._rng = random.Random(seed)

    def add(self, fault: Fault | Mapping[str, Any] | str) -> Fault:
        f = fault if isinstance(fault, Fault) else Fault.from_dict(fault) if isinstance(fault, Mapping) \
            else Fault.parse(str(fault))
        with self._lock:
            self.faults.append(f)
        return f

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def take(self, endpoint: str, kinds: frozenset[str] | set[str]) -> Fault | None:
        """The fault that fires for this event at ``endpoint``, if any."""
        with self._lock:
            for f in self.faults:
                if f.kind not in kinds or (f.endpoint != endpoint and f.endpoint != "*"):
                    continue
                f.seen += 1
                if f.seen <= f.after:
                    continue
                if f.count is not None and f.fired >= f.count:
                    continue
                if f.probability is not None and self._rng.random() >= f.probability:
                    continue
                f.fired += 1
                return f
        return None

    def fired(self) -> dict[str, int]:
        with self._lock:
            return {f.describe(): f.fired for f in self.faults}

    def __repr__(self) -> str:
        return f"FaultPlan([{'; '.join(f.describe() for f in self.faults)}], seed={self.seed})"


def _yaml(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)
