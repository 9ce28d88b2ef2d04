"""Did-you-mean suggestions for a mistyped name: the closest valid names, for an error message."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

CUTOFF = 0.6  # difflib's default: below this similarity a name is not suggested
TIE = 0.05  # names this close to the best one's similarity are suggested with it


def close_names(word: str, choices: Iterable[str]) -> list[str]:
    """The valid names closest to `word`, best first (ties in the order given): the best one and any
    about as close (none when nothing is close). Case is ignored when comparing: `Qwen2.5` finds `qwen2.5`."""
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=3, cutoff=CUTOFF)
    if not found:
        return []
    score = lambda name: difflib.SequenceMatcher(None, word.lower(), name).ratio()  # noqa: E731
    best = max(map(score, found))
    order = list(by_lower)
    return [by_lower[name] for name in sorted(found, key=lambda name: (-round(score(name), 6), order.index(name)))
            if score(name) >= best - TIE]


def did_you_mean(word: str, choices: Iterable[str], separator: str = "; ") -> str:
    """"; did you mean 'x'? " (or "'x' or 'y'"), to go between "unknown thing 'w'" and the rest of a
    message; just `separator` when no valid name is close to `word`."""
    found = close_names(word, choices)
    if not found:
        return separator
    return "; did you mean " + " or ".join(repr(name) for name in found) + "? "
