"""AI Stem Splitter models and their stems (seeds 000/001, SDK 0.1.1 README)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["MODELS", "MODEL_ALIASES", "FROM_WIRE", "stems_of"]

#: stemlab variant (the seeds' ``stemModel`` names), default first
MODELS: tuple[str, ...] = ("htdemucs_ft", "htdemucs", "htdemucs_6s")

#: stemlab variant → the SDK's short model names (README, n8n: "4s"/"6s")
MODEL_ALIASES: Mapping[str, str] = {"htdemucs_6s": "6s", "htdemucs_ft": "4s"}

#: an echoed ``stemModel`` (either spelling) → stemlab variant
FROM_WIRE: Mapping[str, str] = {"6s": "htdemucs_6s", "4s": "htdemucs_ft", "htdemucs_6s": "htdemucs_6s",
                                "htdemucs_ft": "htdemucs_ft", "htdemucs": "htdemucs"}

_FOUR = ("vocals", "drums", "bass", "other")


def stems_of(model: str | None) -> tuple[str, ...]:
    """The stems a model returns: 4 (htdemucs_ft, htdemucs) or 6 (htdemucs_6s:
    plus guitar and piano). The seeds disagree on htdemucs_ft ("6 stems" vs
    "4 stems"); stemlab expects 4 and ignores extra files."""
    return _FOUR + ("guitar", "piano") if model == "htdemucs_6s" else _FOUR
