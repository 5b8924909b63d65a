"""Text quality metrics: character error rate over normalised text.

`levenshtein` is Hyyrö's bit-parallel form of Myers' algorithm on Python integers: one pass
over the hypothesis with a few big-integer operations per character, so a 5,000-character page
takes milliseconds without a compiled dependency.
"""

from __future__ import annotations

import html
import re
import unicodedata

_TAG = re.compile(r"<[^>]+>")
_CELL_END = re.compile(r"</t[dh]>|</tr>|<br\s*/?>", re.IGNORECASE)
_HEADING = re.compile(r"^#+ ", re.MULTILINE)
_LOOKALIKES = str.maketrans(
    {"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "–": "-", "—": "-", "−": "-"}
)


def levenshtein(a: str, b: str) -> int:
    """The edit distance (insertions, deletions, substitutions) between `a` and `b`."""
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    masks: dict[str, int] = {}
    for i, char in enumerate(b):
        masks[char] = masks.get(char, 0) | (1 << i)
    full = (1 << m) - 1
    high = 1 << (m - 1)
    pv, mv, score = full, 0, m
    for char in a:
        eq = masks.get(char, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & full)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = mh | (~(xv | ph) & full)
        mv = ph & xv
    return score


def normalise(text: str) -> str:
    """Text for comparison: NFKC, no Markdown heading marks or HTML tags (cells become spaces),
    entities decoded, typographic quotes and dashes as their ASCII look-alikes (a page image
    cannot tell them apart reliably), every run of whitespace one space."""
    text = _HEADING.sub("", text)
    text = _TAG.sub("", _CELL_END.sub(" ", text))
    text = unicodedata.normalize("NFKC", html.unescape(text)).translate(_LOOKALIKES)
    return " ".join(text.split())


def cer(hypothesis: str, reference: str) -> float:
    """Character error rate: edit distance / reference length, after `normalise`."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return levenshtein(hyp, ref) / len(ref)
