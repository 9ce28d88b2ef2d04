"""Which emitted tokens came from the draft (accepted draft tokens) and which the target produced
itself, and that text marked: `[...]` around accepted runs for plain text, `<mark>` spans for HTML.

The origins come from a run's per-round counts: every round emits the draft tokens the target
accepted and then one token of the target's own, except a last round cut short (by max-tokens or
an EOS among the draft tokens), which emits draft tokens only. Files of schema 1 carry per-token
flags (`from_draft`) instead. Engine-free (no mlx, no tokenizer): `mlxdraft generate
--show-accepted` and the HTML report both use it.

Plain-text convention: each run of consecutive accepted draft tokens is wrapped in one pair of
square brackets, `The [capital of] France [is] Paris`; everything outside brackets the target
produced itself. A run's leading whitespace is put before its opening bracket. Brackets in the
generated text itself are not escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from .errors import InvalidInputError

OPEN, CLOSE = "[", "]"  # around accepted draft runs in plain text
MARK_CLASS = "accepted"  # the class of HTML <mark> spans


class Segment(NamedTuple):
    """A run of text whose tokens share one origin."""

    text: str
    from_draft: bool  # accepted draft tokens (True) or the target's own (False)


def round_origins(emitted: int, accepted: int) -> list[bool]:
    """One round's tokens: `accepted` draft tokens, then the target's own; a round that emitted no
    more than `accepted` tokens was cut short and emitted draft tokens only."""
    drafted = min(accepted, emitted)
    return [True] * drafted + [False] * (emitted - drafted)


def _accepted(row) -> int:
    """A round's accepted count: [proposed, accepted, complete] rows (results files) or objects
    with `.accepted` (VerifyRound, RoundStats)."""
    return int(row.accepted) if hasattr(row, "accepted") else int(row[1])


def token_origins(token_count: int, rounds: Sequence | None = None,
                  from_draft: Sequence[bool] | None = None) -> list[bool]:
    """Per emitted token, whether it was an accepted draft token. `from_draft` (per-token flags)
    wins when given; else `rounds`; with neither (plain decoding) every token is the target's."""
    if from_draft is not None:
        if len(from_draft) != token_count:
            raise InvalidInputError(f"{len(from_draft)} draft flags for {token_count} tokens")
        return [bool(flag) for flag in from_draft]
    rounds = list(rounds or [])
    if not rounds:
        return [False] * token_count
    origins: list[bool] = []
    for index, row in enumerate(rounds):
        accepted = _accepted(row)
        emitted = accepted + 1
        if index == len(rounds) - 1:  # only the last round may be cut short (no own token)
            emitted = token_count - len(origins)
            if emitted not in (accepted, accepted + 1):
                break
        origins += round_origins(emitted, accepted)
    if len(origins) != token_count:
        raise InvalidInputError(f"the rounds (accepted {[_accepted(r) for r in rounds]}) do not add up to "
                                f"{token_count} tokens")
    return origins


def sample_origins(sample) -> list[bool]:
    """token_origins of a RunSample-like object (token_ids, rounds, from_draft, method)."""
    count = len(sample.token_ids)
    if getattr(sample, "method", "") == "baseline":
        return [False] * count
    return token_origins(count, getattr(sample, "rounds", None), getattr(sample, "from_draft", None))


def segments(token_texts: Iterable[str], origins: Iterable[bool]) -> list[Segment]:
    """Consecutive tokens of one origin joined into Segments; tokens without text are skipped."""
    result: list[Segment] = []
    for text, from_draft in zip(token_texts, origins, strict=True):
        if not text:
            continue
        if result and result[-1].from_draft == from_draft:
            result[-1] = Segment(result[-1].text + text, from_draft)
        else:
            result.append(Segment(text, bool(from_draft)))
    return result


def sample_segments(sample) -> list[Segment] | None:
    """A RunSample-like object's text as Segments; None when it recorded no token texts (older
    files, later passes of a prompt, engines that do not decode)."""
    texts = getattr(sample, "token_texts", None)
    if texts is None:
        return None
    if len(texts) != len(sample.token_ids):
        raise InvalidInputError(f"{len(texts)} token texts for {len(sample.token_ids)} tokens")
    return segments(texts, sample_origins(sample))


def first_marked_sample(samples: Iterable) -> tuple[object, list[Segment]] | None:
    """The sample answer a report shows for a setup: of its samples that recorded token texts, the
    one of the lowest prompt index (then pass), with its Segments; None when none recorded any."""
    recorded = [sample for sample in samples if getattr(sample, "token_texts", None) is not None]
    if not recorded:
        return None
    chosen = min(recorded, key=lambda sample: (sample.prompt_index, sample.pass_index))
    return chosen, sample_segments(chosen)


def html_marked(parts: Iterable[Segment]) -> str:
    """Escaped HTML: accepted draft runs as `<mark class="accepted">...</mark>`, the rest plain.
    Newlines are kept as they are (show it in a <pre> or with `white-space: pre-wrap`)."""
    return "".join(f'<mark class="{MARK_CLASS}">{html.escape(text)}</mark>' if from_draft else html.escape(text)
                   for text, from_draft in parts)


def bracketed(parts: Iterable[Segment]) -> str:
    """Plain text with every accepted draft run inside [...]."""
    marker = BracketMarker()
    return "".join(marker.feed(text, from_draft) for text, from_draft in parts) + marker.close()


class BracketMarker:
    """The plain-text convention for a stream: feed each token's text and origin as it comes,
    print what `feed` returns, and `close()` at the end."""

    def __init__(self):
        self.inside = False

    def feed(self, text: str, from_draft: bool) -> str:
        if not text:
            return ""
        prefix = ""
        if from_draft and not self.inside:
            stripped = text.lstrip()  # a run's leading space goes before its bracket: "The [capital]"
            prefix, text = text[: len(text) - len(stripped)] + OPEN, stripped
        elif not from_draft and self.inside:
            prefix = CLOSE
        self.inside = from_draft
        return prefix + text

    def close(self) -> str:
        suffix = CLOSE if self.inside else ""
        self.inside = False
        return suffix
