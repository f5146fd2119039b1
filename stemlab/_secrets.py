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
from collections.abc import Iterable

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
#: a truncated secret is still redacted down to this many leading characters
PREFIX_LEN = 8
_BASIC = re.compile(r"(?i)(basic\s+)([A-Za-z0-9+/]{4,}={0,2})")


def renderings(value: str) -> set[str]:
    """Every way ``value`` shows up in text stemlab or its HTTP stack may
    write: raw, ``repr``-escaped, JSON-escaped, percent-encoded (``quote``
    and ``quote_plus``, upper- and lower-case hex) and base64."""
    import base64
    import json
    from urllib.parse import quote, quote_plus

    out = {value, repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    for enc in (quote(value, safe=""), quote_plus(value, safe="")):
        out.add(enc)
        out.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), enc))
    out.add(base64.b64encode(value.encode()).decode().rstrip("="))
    return {r for r in out if len(r) >= _MIN_LEN}


def _prefix_pattern(r: str) -> str:
    """``r`` or any prefix of it at least :data:`PREFIX_LEN` characters long
    (a message cut short still hides the key), as a regex."""
    if len(r) <= PREFIX_LEN:
        return re.escape(r)
    tail = ""
    for c in reversed(r[PREFIX_LEN:]):
        tail = f"(?:{re.escape(c)}{tail})?"
    return re.escape(r[:PREFIX_LEN]) + tail


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that :func:`redact` removes it (and every
    rendering of it, see :func:`renderings`) everywhere."""
    global _pattern
    if not value or len(value) < _MIN_LEN:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        alts = sorted({r for s in _secrets for r in renderings(s)}, key=len, reverse=True)
        _pattern = re.compile("|".join(_prefix_pattern(r) for r in alts))


def _basic(m: re.Match[str]) -> str:
    """A ``Basic <base64>`` credential whose decoded text holds a secret."""
    import base64
    import binascii

    try:
        decoded = base64.b64decode(m.group(2) + "=" * (-len(m.group(2)) % 4)).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return m.group(0)
    return m.group(1) + REDACTED if any(s in decoded for s in _secrets) else m.group(0)


def redact(text: object) -> str:
    """``str(text)`` with every registered secret — raw, escaped, percent-
    or base64-encoded, inside a Basic credential, or cut short down to
    :data:`PREFIX_LEN` characters — replaced by ``***``."""
    s = text if isinstance(text, str) else str(text)
    pat = _pattern
    if pat is None:
        return s
    s = _BASIC.sub(_basic, s)
    return pat.sub(REDACTED, s)


def check_key(value: str, where: str) -> str:
    """``value`` if it can be a key: printable ASCII without whitespace.
    A key read with a stray ``\\n``/``\\r``/NUL (a CRLF env file, a Kubernetes
    secret made from a file) or non-ASCII bytes would break the HTTP header
    it goes into — and leak through the library's error message — so it is
    refused here with a :class:`~stemlab.errors.ConfigError` naming
    ``where`` (the variable or option), never the value."""
    from .errors import ConfigError

    bad = sorted({("a control character" if (ord(c) < 32 or ord(c) == 127) else
                   "whitespace" if c.isspace() else "a non-ASCII character")
                  for c in value if ord(c) < 33 or ord(c) > 126})
    if bad:
        raise ConfigError(f"{where}: the key contains {' and '.join(bad)} (for example a trailing newline from a "
                          "CRLF .env file or a secret made from a file); expected printable ASCII without spaces",
                          field=where)
    return value


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
    """The key for ``service``: an explicit value wins, else its env var.
    Either is checked with :func:`check_key` (registered for redaction
    first, so even the refusal cannot show it)."""
    if isinstance(explicit, Secret):
        return explicit
    if explicit:
        register_secret(explicit)
        return Secret(check_key(explicit, f"{service}: the api_key option"), "argument")
    var = ENV_VARS.get(service)
    if var is None:
        return None
    value = os.environ.get(var, "")
    if not value:
        return None
    register_secret(value)
    return Secret(check_key(value, f"${var}"), f"${var}")


_base_factory = logging.getLogRecordFactory()
_factory_installed = False


def _redacting_factory(*args: object, **kwargs: object) -> logging.LogRecord:
    """Every log record, from any logger (httpx's and httpcore's children
    included) to any handler (added before or after this), leaves with its
    message and traceback redacted."""
    record = _base_factory(*args, **kwargs)
    if _pattern is not None:
        _filter.filter(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    return record


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
    """Redact every log record at creation (a record factory: any logger,
    any handler) and, belt and braces, attach the redacting filter to
    stemlab's and its HTTP stack's loggers and the root logger's handlers."""
    global _factory_installed
    if not _factory_installed:
        logging.setLogRecordFactory(_redacting_factory)
        _factory_installed = True
    for name in loggers:
        lg = logging.getLogger(name)
        if _filter not in lg.filters:
            lg.addFilter(_filter)
    for h in logging.getLogger().handlers:
        if _filter not in h.filters:
            h.addFilter(_filter)
