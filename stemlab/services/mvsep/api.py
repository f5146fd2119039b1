"""MVSEP wire format (seed 002 and ``mvsep-cli`` 1.2.0): hosts, output
format numbers, job statuses and how result file names name their stem."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .._remote.http import DONE, FAILED, QUEUED, RUNNING
from .catalog import STEM_WORDS

__all__ = ["MIRRORS", "OUTPUT_FORMATS", "STATUS_MAP", "stem_in_name"]

#: host of each mirror, as mvsep-cli's ``Config.MIRRORS``; the API lives under ``/api``
MIRRORS: Mapping[str, str] = {"main": "https://mvsep.com", "mirror": "https://mirror.mvsep.com"}

#: stemlab name → ``output_format`` number (seed 002 / mvsep-cli)
OUTPUT_FORMATS: Mapping[str, int] = {"mp3": 0, "wav": 1, "flac": 2, "m4a": 3, "wav32": 4, "flac24": 5}

#: every ``status`` of ``GET /separation/get`` → stemlab's job status
#: (``error``: ZFTurbo's example client stops on it too; ``not_found``: the
#: job is unknown, deleted or expired — final, the client cannot wait it out)
STATUS_MAP: Mapping[str, str] = {
    "waiting": QUEUED,
    "processing": RUNNING,
    "distributing": RUNNING,
    "merging": RUNNING,
    "done": DONE,
    "failed": FAILED,
    "error": FAILED,
    "not_found": FAILED,
}


def stem_in_name(name: str) -> str | None:
    """The stem a result file name ends with: the last stem word in it
    (``song_vocals`` → vocals; ``Song_instrum_bs_roformer_81`` → instrum;
    ``x_lead_vocals`` → lead_vocals)."""
    tokens = [t for t in re.split(r"[^a-z]+", name.lower()) if t]
    for i in range(len(tokens) - 1, -1, -1):
        t = tokens[i]
        if t == "vocals" and i > 0 and tokens[i - 1] in ("lead", "back"):
            return f"{tokens[i - 1]}_vocals"
        if t in STEM_WORDS and t not in ("lead", "back"):
            return t
    return None

