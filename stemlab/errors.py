"""One exception tree for all of stemlab.

::

    StemlabError
    ├── InputError            bad audio file / array / argument (names file or field)
    ├── DatasetError          dataset layout, missing tracks, card validation
    ├── ConfigError           unknown provider/param, invalid spec
    ├── ProviderError         anything a provider reports
    │   ├── ProviderUnavailable   missing weights / key / unreachable service
    │   ├── ProviderRejected      the provider refuses this input (too long, no refs …)
    │   ├── ProviderOutputError   output unusable (corrupt, wrong length, unalignable)
    │   └── ProviderTimeout       job or request exceeded its time limit
    ├── BudgetExceeded        the next paid job would exceed the cap
    └── RunError              ledger / lock / resume problems in the harness

Every message passes through :func:`stemlab._secrets.redact`, so an API key
can never leak through ``str(exc)``.
"""

from __future__ import annotations

from typing import Any

from ._secrets import redact

__all__ = [
    "StemlabError",
    "InputError",
    "DatasetError",
    "ConfigError",
    "ProviderError",
    "ProviderUnavailable",
    "ProviderRejected",
    "ProviderOutputError",
    "ProviderTimeout",
    "InDoubt",
    "BudgetExceeded",
    "RunError",
]


class StemlabError(Exception):
    """Base of every error stemlab raises on purpose.

    ``str(err)`` is redacted; ``err.details`` carries structured context
    (file, field, status code …) for result rows."""

    def __init__(self, message: str, **details: Any) -> None:
        self.message = redact(message)
        self.details = {k: (redact(v) if isinstance(v, str) else v) for k, v in details.items()}
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # keep details across process boundaries
        return (_rebuild, (type(self), self.message, self.details))

    @property
    def kind(self) -> str:
        """Short class name used in result rows (``"ProviderTimeout"``)."""
        return type(self).__name__


def _rebuild(cls: type[StemlabError], message: str, details: dict[str, Any]) -> StemlabError:
    err = cls.__new__(cls)
    StemlabError.__init__(err, message, **details)
    return err


class InputError(StemlabError, ValueError):
    """Bad input: unreadable/corrupt/unsupported audio, wrong shapes, NaN …"""


class DatasetError(StemlabError):
    """A dataset root, layout or card check failed."""


class ConfigError(StemlabError, ValueError):
    """Invalid configuration: unknown provider, bad parameter, invalid spec."""


class ProviderError(StemlabError):
    """Base for errors reported by a provider.

    ``retryable`` tells the runner whether trying the same job again later
    can succeed (service down, timeout) or not (rejected input)."""

    retryable: bool = False

    def __init__(self, message: str, *, provider: str | None = None, **details: Any) -> None:
        if provider is not None:
            details["provider"] = provider
        super().__init__(message, **details)
        self.provider = provider


class ProviderUnavailable(ProviderError):
    """The provider cannot run now: missing weights/key, service unreachable."""

    retryable = True


class ProviderRejected(ProviderError):
    """The provider refuses this input or request (4xx, too long, no references)."""


class ProviderOutputError(ProviderError):
    """The provider answered, but the output is unusable."""

    retryable = True


class InDoubt(ProviderUnavailable):
    """A paid submit may or may not have reached the service (its answer was
    lost) and the service offers no way to look: the job stays *in doubt* —
    not failed, not resubmitted — until the user checks the account and
    reruns with ``--retry-in-doubt``."""


class ProviderTimeout(ProviderError):
    """A request or a job exceeded its time limit."""

    retryable = True


class BudgetExceeded(StemlabError):
    """Submitting the next paid job could exceed the budget cap."""


class RunError(StemlabError):
    """Harness problems: output directory locked, corrupt ledger …"""
