"""Which backend computes the metrics: the ``device`` metric option.

``metric_options.device`` (run specs, ``stemlab score --device``,
:func:`stemlab.metrics.evaluate`'s ``device=``):

* ``"cpu"`` (default) or ``"numpy"`` — the numpy path (block-wise reads,
  memory independent of the track's length);
* ``"torch"`` or ``"torch:cpu"`` — the torch backend
  (:mod:`stemlab.metrics.torch`) on CPU tensors;
* ``"cuda"`` or ``"cuda:N"`` — the torch backend on that GPU.

The torch backend computes in float64 on this path, so the scores are the
numpy path's to ≤ 1e-9 dB (BSSEval, usdr, si_sdr, sdr_gain, l1_freq) —
``device`` is a speed setting and is not part of a run's ``metrics_hash``.
bleedless/fullness keep MSST's float32 spectrograms on either backend
(≲ 1e-5 apart). Metrics without a torch implementation (``log_wmse``) stay
on the numpy path. Sources are read whole onto the device (the numpy path
reads blocks).

:func:`parse_device` checks the spelling without importing torch (run-spec
validation); :func:`torch_device` also checks that torch imports and the GPU
exists. Both raise :class:`~stemlab.errors.InputError` naming
``metric_options.device``.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import InputError

__all__ = ["DEVICE_FIELD", "NUMPY_DEVICES", "parse_device", "torch_device"]

#: the field named by errors about the option
DEVICE_FIELD = "metric_options.device"
#: the spellings of the numpy path
NUMPY_DEVICES = ("cpu", "numpy")
_TORCH = re.compile(r"^(?:torch(?::cpu)?|cuda(?::\d+)?)$")


def parse_device(value: Any) -> str | None:
    """None for the numpy path, else the torch device string (``"cpu"``,
    ``"cuda"``, ``"cuda:1"``); :class:`InputError` for anything else."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{DEVICE_FIELD}: expected a string ('cpu', 'torch', 'torch:cpu', 'cuda', 'cuda:N'), "
                         f"got {value!r}", field=DEVICE_FIELD)
    v = value.strip().lower()
    if v in NUMPY_DEVICES:
        return None
    if not _TORCH.match(v):
        raise InputError(f"{DEVICE_FIELD}: unknown device {value!r}; valid: 'cpu' (numpy), 'torch', 'torch:cpu', "
                         "'cuda', 'cuda:N'", field=DEVICE_FIELD)
    return "cpu" if v.startswith("torch") else v


def torch_device(value: Any) -> Any:
    """The ``torch.device`` for ``value`` (None for the numpy path), checking
    that torch imports and that a CUDA device exists."""
    dev = parse_device(value)
    if dev is None:
        return None
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of the local models
        raise InputError(f"{DEVICE_FIELD}: {value!r} needs torch (pip install torch)", field=DEVICE_FIELD) from None
    d = torch.device(dev)
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{DEVICE_FIELD}: {value!r} asks for a GPU but torch sees no CUDA device here "
                             f"(torch {torch.__version__}); use 'torch' for the torch backend on CPU or 'cpu'",
                             field=DEVICE_FIELD)
        n = torch.cuda.device_count()
        if d.index is not None and d.index >= n:
            raise InputError(f"{DEVICE_FIELD}: {value!r}: only {n} CUDA device(s) here", field=DEVICE_FIELD)
    return d
