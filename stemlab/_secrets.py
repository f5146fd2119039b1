"""Secret handling: every API key stemlab touches is registered here and
redacted from exception messages, log records, reprs and anything written.

Keys come from environment variables (see :data:`ENV_VARS`) or from an explicit
argument; both paths call :func:`register_secret`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Iterable

from .services import env_vars

__all__ = [
    "ENV_VARS",
    "REDACTED",
    "register_secret",
    "redact",
    "redact_obj",
    "get_secret",
    "Secret",
    "install_log_filter",
]

REDACTED = "***"

#: Environment variable holding the API key of each remote service
#: (``<service>``) and its webhook signing secret (``<service>_webhook``), from
#: :data:`stemlab.services.SERVICES`.
ENV_VARS: dict[str, str] = env_vars()

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_MIN_LEN = 6  # shorter strings would redact ordinary words


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that :func:`redact` removes it everywhere."""
    global _pattern
    if not value or len(value) < _MIN_LEN:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        alts = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in alts))


def redact(text: object) -> str:
    """``str(text)`` with every registered secret replaced by ``***``."""
    s = text if isinstance(text, str) else str(text)
    pat = _pattern
    if pat is None:
        return s
    return pat.sub(REDACTED, s)


#: mapping keys whose values are credentials whatever they hold
SENSITIVE_KEYS = frozenset({"api_key", "api_token", "apikey", "token", "secret", "password", "authorization",
                            "webhook_secret"})


def redact_obj(obj: object) -> object:
    """A copy of a JSON-like structure safe to write: values under
    :data:`SENSITIVE_KEYS` become ``***``, every string is :func:`redact`-ed,
    :class:`Secret` values are masked."""
    if isinstance(obj, Secret):
        return REDACTED
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: (REDACTED if isinstance(k, str) and k.lower() in SENSITIVE_KEYS and v not in (None, "")
                    else redact_obj(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


class Secret:
    """A string that never shows itself in ``repr``/``str``/f-strings.

    ``.get()`` returns the value for the one place that needs it (an auth
    header or form field)."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "argument") -> None:
        self._value = value
        self.source = source
        register_secret(value)

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<redacted from {self.source}>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self):  # pickling to worker processes keeps the value
        return (Secret, (self._value, self.source))


def get_secret(service: str, explicit: str | Secret | None = None) -> Secret | None:
    """The key for ``service``: an explicit value wins, else its env var."""
    if isinstance(explicit, Secret):
        return explicit
    if explicit:
        return Secret(explicit, "argument")
    var = ENV_VARS.get(service)
    if var is None:
        return None
    value = os.environ.get(var, "")
    return Secret(value, f"${var}") if value else None


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # pragma: no cover - malformed record, leave it
            return True
        record.msg = redact(msg)
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_filter = _RedactingFilter()


def install_log_filter(loggers: Iterable[str] = ("stemlab", "httpx", "httpcore", "uvicorn")) -> None:
    """Attach the redacting filter to stemlab's and its HTTP stack's loggers
    and to every handler of the root logger."""
    for name in loggers:
        lg = logging.getLogger(name)
        if _filter not in lg.filters:
            lg.addFilter(_filter)
    for h in logging.getLogger().handlers:
        if _filter not in h.filters:
            h.addFilter(_filter)
