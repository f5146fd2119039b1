"""SCNet, as in MSST (Music-Source-Separation-Training) — vendored.

Source: the ``msst`` 0.1.0 wheel on PyPI (MIT, © 2024 Roman Solovyev
(ZFTurbo)), files ``msst/models/scnet/scnet.py`` and ``separation.py``,
copied unchanged apart from this header (the architecture itself is
starrytong's SCNet, MIT). Why vendored: ``msst`` pins ``torch<2.12`` and
cannot be installed beside stemlab's ``torch==2.13.0``, and no other
installable package ships SCNet. Being MSST's own code, module names and
parameter names — hence the checkpoints' state-dict keys
(``encoder.0.SDlayer.convs.0.weight`` …) — are those of MSST's SCNet
checkpoints.
"""

from .scnet import SCNet

__all__ = ["SCNet"]

LICENSE = """MIT License

Copyright (c) 2024 Roman Solovyev (ZFTurbo)

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""
