""""Did you mean": the known names closest to a mistyped one (RapidFuzz, the project's one matcher).

Every error that names an unknown key, field, template id or metric suggests through
:func:`closest`, so they all rank candidates the same way: RapidFuzz's normalised Indel similarity
(``fuzz.ratio``, 0..100: the share of characters two names have in common in order, the measure
:class:`difflib.SequenceMatcher` approximates; difflib is not used).
"""

from __future__ import annotations

from collections.abc import Iterable


def closest(name: str, known: Iterable[str], *, n: int = 1, cutoff: float = 60.0) -> list[str]:
    """Up to ``n`` names of ``known`` whose similarity to ``name`` is at least ``cutoff`` (0..100), best
    first; ties keep the order of ``known``."""
    from rapidfuzz import fuzz, process

    matches = process.extract(str(name), list(known), scorer=fuzz.ratio, limit=n, score_cutoff=cutoff)
    return [choice for choice, _score, _index in matches]
