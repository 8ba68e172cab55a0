"""Problem text made comparable: one normal form for exact duplicates, tokens for shingles and n-grams.

Both dedup and decontamination compare problems through these functions, so a problem written as
`$\\frac{1}{2}\\,x + y$` and `$\\dfrac{1}{2} x+y$` is the same text to each of them.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Spacing commands, `\left`/`\right` and `~` change how a formula looks, never what it says. A row break
# `\\` is matched first so that its second backslash is not read as the spacing command `\ `.
_SPACING = re.compile(r"(\\\\)|\\[,;:!> ]|\\q?quad(?![a-z])|\\(?:left|right)(?![a-z])|~|\\(?:displaystyle|textstyle)")
# Spellings of one symbol; the benchmark copies of a problem often use the other one.
_ALIASES = {"\\cdots": "\\dots", "\\ldots": "\\dots", "\\dotsm": "\\dots", "\\dotsb": "\\dots",
            "\\dotsc": "\\dots", "\\le": "\\leq", "\\ge": "\\geq", "\\ne": "\\neq", "\\leqslant": "\\leq",
            "\\geqslant": "\\geq"}
_COMMAND = re.compile(r"\\[a-z]+")
# No space around symbols, nor before a command: `a\leq b` is `a \leq b` (a space after one can matter).
_SPACE_AROUND_SYMBOL = re.compile(r"\s*([^\w\s\\])\s*|\s+(?=\\)")
# Tokens: LaTeX commands, words, numbers, and the operators that change a problem's meaning.
_TOKEN = re.compile(r"\\[a-z]+|[^\W\d_]+|\d+(?:\.\d+)?|[+\-*/=<>^!|]")


def normal_form(text: str) -> str:
    """Lower-cased text with LaTeX spacing removed and whitespace collapsed (none around symbols)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _SPACING.sub(_keep_row_break, text).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _COMMAND.sub(_alias, text)
    text = _SPACE_AROUND_SYMBOL.sub(_symbol, text)
    return " ".join(text.split())


def _keep_row_break(match: re.Match) -> str:
    return match.group(1) or " "


def _alias(match: re.Match) -> str:
    return _ALIASES.get(match.group(0), match.group(0))


def _symbol(match: re.Match) -> str:
    return match.group(1) or ""  # a function: re's template expansion is several times slower


def fingerprint(normal: str) -> bytes:
    """A 16-byte digest of a normal form (see `normal_form`): the key of exact-duplicate detection."""
    return hashlib.blake2b(normal.encode("utf-8"), digest_size=16).digest()


def split_tokens(normal: str) -> list[str]:
    """Words, numbers, LaTeX commands and operators of a normal form, in order."""
    return _TOKEN.findall(normal)


def tokens(text: str) -> list[str]:
    """The tokens of any text: `split_tokens(normal_form(text))`."""
    return _TOKEN.findall(normal_form(text))


def ngrams(words: list[str], n: int) -> set[str]:
    """The set of n-token windows; a problem shorter than n is one window of its whole text.

    Without the short-problem rule, "Compute $\\dbinom{8}{4}$." would have no n-grams at all and could
    never be matched; with it, a short problem matches only a problem with the very same tokens.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}
