"""MVSEP's algorithm list: what ``sep_type`` and ``add_opt1..3`` mean.

``GET /api/app/algorithms`` (seed 002 "获取分离类型") answers an array of
algorithms — ``render_id`` (the ``sep_type``), ``name`` (stems in
parentheses, e.g. ``"Demucs4 HT (vocals, drums, bass, other)"``),
``price_coefficient`` (see :mod:`.pricing`), ``orientation`` (2 = premium
users only) and ``algorithm_fields`` (``add_optN`` with JSON-encoded
``options``). :func:`parse_algorithms` reads it; the shipped snapshot
``algorithms.json`` (see its ``_source``) lets offline runs plan and
validate; :func:`stems_for` tells the stems an algorithm + options return.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from ...errors import ProviderOutputError

__all__ = [
    "VARIANTS",
    "ACCOMP_WORDS",
    "STEM_WORDS",
    "Algorithm",
    "AlgorithmField",
    "ModelChoice",
    "slugify",
    "stems_of",
    "stems_for",
    "parse_algorithms",
    "load_snapshot",
    "variant_names",
]

#: stemlab variant → ``sep_type`` (``render_id``). Every other algorithm of the
#: list is reachable as the slug of its name (:func:`slugify`), e.g. ``mvsep_wind``.
VARIANTS: Mapping[str, int] = {
    "demucs4ht": 20,
    "bs_roformer": 40,
    "mel_roformer": 48,
    "bs_roformer_sw": 63,
    "mdx23c": 25,
    "scnet": 46,
    "mdx_b": 23,
    "ensemble_vocals": 26,  # Ensemble (vocals, instrum)
    "ensemble": 28,  # Ensemble (vocals, instrum, bass, drums, other)
    "ensemble_all_in": 30,
    "demucs4_vocals": 27,
    "vit_large": 33,
    "uvr_vr": 9,
    "mdx_ab": 7,
    "demucs3": 10,
    "demucs2": 13,
    "spleeter": 0,
    "unmix": 3,
    "karaoke": 49,
}

#: service stem words → stemlab stem names (when the algorithm also returns vocals)
ACCOMP_WORDS = {"instrum", "instrumental", "music", "instrumentals", "accompaniment", "other_than_vocals"}
STEM_WORDS = {"vocals", "drums", "bass", "other", "piano", "guitar", "instrum", "instrumental", "music", "strings",
               "wind", "organ", "saxophone", "violin", "crowd", "dialog", "speech", "sfx", "effects", "kick", "snare",
               "cymbals", "toms", "ride", "hh", "crash", "hihat", "lead", "back", "lead_vocals", "back_vocals",
               "accompaniment", "noreverb"}


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def stems_of(text: str) -> tuple[str, ...] | None:
    """stemlab stem names from a parenthesised list in an algorithm or model
    name (``"Demucs4 HT (vocals, drums, bass, other)"``), or None.
    ``instrum``/``instrumental``/``music`` next to vocals become
    ``accompaniment``; ``lead/back vocals`` → ``lead_vocals``, ``back_vocals``."""
    for group in re.findall(r"\(([^()]*)\)", text):
        words = [w.strip().lower() for w in group.split(",") if w.strip()]
        if not words:
            continue
        out: list[str] = []
        for w in words:
            if w == "lead/back vocals":
                out += ["lead_vocals", "back_vocals"]
            elif re.fullmatch(r"[a-z ]+", w) and slugify(w) in STEM_WORDS:
                out.append(slugify(w))
            else:
                out = []
                break
        if not out:
            continue
        if "vocals" in out:
            out = ["accompaniment" if w in ACCOMP_WORDS else w for w in out]
        seen: list[str] = []
        for w in out:
            if w not in seen:
                seen.append(w)
        return tuple(seen)
    return None



@dataclass(frozen=True)
class AlgorithmField:
    """One ``add_optN`` field: ``options`` key → label, ``default_key``."""

    name: str  # add_opt1 | add_opt2 | add_opt3
    text: str
    options: Mapping[str, str]
    default_key: str | None

    @property
    def is_model(self) -> bool:
        return "model" in self.text.lower()

    def names(self) -> dict[str, str]:
        """Model name → option key: the slug of each label up to its first
        parenthesis (``"htdemucs_ft (High Quality, Slow)"`` → ``htdemucs_ft``)
        and of a version in parentheses (``"… (v. 2025.06.30)"`` →
        ``v_2025_06_30``); labels whose slugs collide get ``_<key>``."""
        first: dict[str, list[str]] = {}
        extra: dict[str, list[str]] = {}
        for key, label in self.options.items():
            head = slugify(label.split(" (", 1)[0]) or slugify(label)
            first.setdefault(head, []).append(key)
            for par in re.findall(r"\(([^()]*)\)", label):
                if re.match(r"\s*v(er)?\.?\s*\d{4}", par, re.I):
                    extra.setdefault(slugify(par), []).append(key)
        out: dict[str, str] = {}
        for table in (first, extra):
            for name, keys in table.items():
                if len(keys) == 1 and name not in out:
                    out[name] = keys[0]
                else:
                    for k in keys:
                        out.setdefault(f"{name}_{k}", k)
        return out


@dataclass(frozen=True)
class Algorithm:
    """One entry of ``GET /app/algorithms``."""

    render_id: int
    name: str
    price_coefficient: float
    group: int
    orientation: int
    fields: tuple[AlgorithmField, ...]

    @property
    def slug(self) -> str:
        for v, rid in VARIANTS.items():
            if rid == self.render_id:
                return v
        return slugify(self.name.split(" (", 1)[0])

    @property
    def model_field(self) -> AlgorithmField | None:
        return next((f for f in self.fields if f.is_model), None)

    def field(self, name: str) -> AlgorithmField | None:
        return next((f for f in self.fields if f.name == name), None)



def stems_for(algo: Algorithm, add_opts: Mapping[str, str]) -> tuple[tuple[str, ...], str | None]:
    """(stemlab stems, model label) of ``algo`` run with ``add_opts``: the
    stems listed in the chosen model's label if it lists any (spleeter,
    UnMix), else those of the algorithm's name; Demucs' ``6 stems`` model
    adds guitar and piano. Empty stems: not a separation algorithm."""
    mf = algo.model_field
    label = None
    if mf is not None:
        label = mf.options.get(str(add_opts.get(mf.name) or mf.default_key or ""))
    stems = (stems_of(label) if label else None) or stems_of(algo.name) or ()
    if label and "6 stems" in label and "guitar" not in stems:
        stems = tuple(stems) + ("guitar", "piano")
    return tuple(stems), label



def parse_algorithms(data: Any) -> dict[int, Algorithm]:
    """``render_id`` → :class:`Algorithm` from the API's JSON (an array;
    ``options`` is a JSON-encoded object, as mvsep-cli reads it)."""
    items = data.get("algorithms") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ProviderOutputError(f"mvsep: algorithm list: expected an array, got {type(items).__name__}")
    out: dict[int, Algorithm] = {}
    for it in items:
        if not isinstance(it, dict) or "render_id" not in it:
            continue
        fields = []
        for f in it.get("algorithm_fields") or []:
            opts = f.get("options")
            if isinstance(opts, str):
                try:
                    opts = json.loads(opts) if opts.strip() else {}
                except ValueError:
                    opts = {}
            opts = {str(k): str(v) for k, v in (opts or {}).items()} if isinstance(opts, dict) else {}
            dk = f.get("default_key")
            fields.append(AlgorithmField(str(f.get("name") or ""), str(f.get("text") or ""), opts,
                                         None if dk is None else str(dk)))
        try:
            rid = int(it["render_id"])
            pc = float(it.get("price_coefficient") or 1.0)
        except (TypeError, ValueError):
            continue
        out[rid] = Algorithm(rid, str(it.get("name") or ""), pc, int(it.get("algorithm_group_id") or 0),
                             int(it.get("orientation") or 0), tuple(fields))
    return out



@lru_cache(maxsize=1)
def load_snapshot() -> dict[int, Algorithm]:
    """The shipped snapshot of the algorithm list (see its ``_source``)."""
    raw = resources.files(__package__).joinpath("algorithms.json").read_text(encoding="utf-8")
    return parse_algorithms(json.loads(raw))


def variant_names() -> tuple[str, ...]:
    """stemlab's variant names: :data:`VARIANTS` first, then the slug of every
    other separation algorithm of the snapshot."""
    algos = load_snapshot()
    named = [v for v, rid in VARIANTS.items() if rid in algos]
    rest = sorted({a.slug for a in algos.values() if stems_of(a.name)} - set(named))
    return tuple(named + rest)



@dataclass(frozen=True)
class ModelChoice:
    """What a provider configuration sends: ``sep_type`` and the ``add_opt`` values."""

    sep_type: int
    add_opts: Mapping[str, str]
    stems: tuple[str, ...]
    model: str | None  # the model option's label

