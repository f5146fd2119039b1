"""BS-Roformer and Mel-Band Roformer, as in MSST — vendored.

Source: the ``msst`` 0.1.0 wheel on PyPI (MIT, © 2024 Roman Solovyev
(ZFTurbo)): ``msst/models/bs_roformer/{attend,bs_roformer,mel_band_roformer}.py``,
unchanged apart from a header and one import made relative
(``from .attend import Attend``). The architectures are lucidrains'
BS-/Mel-Band-RoFormer as modified by MSST (extra config keys such as
``mlp_expansion_factor``, ``skip_connection``, ``zero_dc``, ``use_pope``).

Why vendored rather than imported:

* ``msst`` pins ``torch<2.12`` (stemlab needs ``torch==2.13.0``);
* ``bs-roformer`` (lucidrains) is the reference implementation, not MSST's
  modified copy: MSST checkpoints carry extra keys;
* ``audio-separator`` 0.47.1 ships copies with MSST's module names (same
  state-dict keys, checked), but its forward differs from MSST's: it never
  applies ``zero_dc`` (MSST zeroes the DC bin before the inverse STFT) and
  calls ``istft`` without ``length`` — with the same weights its outputs
  differ from MSST's by 3–7 % of their peak on a random model (measured with
  the msst wheel's own classes), so it does not reproduce MSST checkpoints.

Key compatibility: these are MSST's classes, so MSST Roformer checkpoints
load with ``strict=True``. PoPE attention (``use_pope: true``) needs the
optional ``PoPE-pytorch`` package, as in MSST.
"""

from .bs_roformer import BSRoformer
from .mel_band_roformer import MelBandRoformer

__all__ = ["BSRoformer", "MelBandRoformer"]
