"""LaTeX clean-up before parsing: strip what carries no mathematical meaning, keep what does.

Everything here is string rewriting with bounded cost; nothing is evaluated.
"""

from __future__ import annotations

import re

# Answers longer than this are refused: the longest gold in the standard benchmarks is ~200 characters.
MAX_ANSWER_CHARS = 1000
MAX_NESTING = 40


class Refused(ValueError):
    """The answer is outside what the verifier will look at (too long, too deep, malformed)."""


# A row break `\\\\` is matched first so that its second backslash is not read as a spacing command.
_SPACING = re.compile(r"(\\\\)|\\[,;:!> ]|\\q?quad\b|\\(?:hspace|vspace)\*?\{[^{}]*\}|~")
# `\left.` and `\right.` are invisible delimiters: the dot goes with them.
_SIZING = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)[lr]?(?![a-zA-Z])\.?|\\middle(?![a-zA-Z])")
_NOISE = re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits)(?![a-zA-Z])|\\mathrm\{d\}")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree(?![a-zA-Z])|\^\{\\text\{o\}\}")
_FRAC_VARIANTS = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_TEXT_COMMANDS = re.compile(
    r"\\(?:text|textbf|textit|textrm|texttt|textnormal|mbox|mathrm|mathbf|mathit|mathsf|mathtt|operatorname|boldsymbol|bm)"
    r"\s*\{"
)
_HEDGE_WORDS = re.compile(r"\\text\{\s*,?\s*(?:or|and)\s*\}|(?<![a-zA-Z\\])(?:or|and)(?![a-zA-Z])")
_REPEATED_COMMAS = re.compile(r",(?:\s*,)+")
# `29,\!322` and `1{,}000` are thousands separators wherever they stand.
_INNER_THOUSANDS = re.compile(r"(?<=\d)(?:,\\!|\{,\})\s*(?=\d{3})")
_PRIMES = re.compile(r"\^\{?((?:\s*\\prime)+)\s*\}?")
_PHANTOM = re.compile(r"\\phantom\s*(?:\{[^{}]*\}|\\?.)")
_LEADING_RELATION = re.compile(r"^(?:\\approx|=)\s*")
_UNICODE = {
    "−": "-", "–": "-", "×": "\\times ", "·": "\\cdot ", "÷": "\\div ", "≤": "\\leq ", "≥": "\\geq ",
    "≠": "\\neq ", "π": "\\pi ", "∞": "\\infty ", "√": "\\sqrt ", "∪": "\\cup ", "∈": "\\in ",
    "\u2009": " ", "\u00a0": " ",
}
_ALIASES = {
    "\\le": "\\leq", "\\ge": "\\geq", "\\leqslant": "\\leq", "\\geqslant": "\\geq", "\\ne": "\\neq",
    "\\lt": "<", "\\gt": ">", "\\dots": "\\ldots", "\\cdots": "\\ldots", "\\varnothing": "\\emptyset",
    "\\lbrace": "\\{", "\\rbrace": "\\}", "\\lbrack": "[", "\\rbrack": "]", "\\vert": "|", "\\lvert": "|",
    "\\rvert": "|", "\\mid": "|", "\\colon": ":", "\\to": "\\rightarrow",
}
_ALIAS_PATTERN = re.compile(r"\\[a-zA-Z]+")

# Units and currency written after a number. Inside \text{} any listed word goes; bare, only words of two
# letters or more, so that a trailing variable ("\pi r^2 h") is never mistaken for a unit.
_UNIT_WORDS = (
    "km|m|cm|mm|nm|mi|miles?|ft|feet|foot|inch|inches|in|yards?|yd|meters?|metres?|centimeters?|kilometers?|"
    "kg|g|mg|grams?|kilograms?|lbs?|pounds?|ounces?|oz|tons?|s|sec|seconds?|min|minutes?|h|hr|hours?|days?|"
    "weeks?|months?|years?|L|mL|liters?|litres?|gallons?|cups?|dollars?|cents?|euros?|units?|square|sq|cubic|"
    "sq\\.|degrees?|radians?|rad|mph|kph|km/h|m/s|J|N|W|V|A|K|Pa|Hz|eV|mol|people|students|times|ways|pages|"
    "apples|marbles|cookies|points|percent"
)
_BARE_UNIT_WORDS = "|".join(word for word in _UNIT_WORDS.split("|") if len(word.rstrip("?")) > 2)
_TRAILING_UNIT = re.compile(
    rf"(?:(?<=[\d}}.)\s])\s*\\(?:text|mbox|mathrm|textrm)\{{\s*(?:{_UNIT_WORDS})(?:\s+(?:{_UNIT_WORDS}))*\s*\}}"
    rf"|(?<=[\d}}])\s*(?:{_BARE_UNIT_WORDS})(?![a-zA-Z]))(?:\s*\^\s*\{{?-?\d\}}?)?\s*$"
)
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:(?:,|\{,\}| )\d{3})+(?:\.\d+)?$")


def check_shape(answer: str) -> None:
    """Refuse before any work: oversized, too deeply nested, or unbalanced braces."""
    if len(answer) > MAX_ANSWER_CHARS:
        raise Refused(f"answer longer than {MAX_ANSWER_CHARS} characters")
    depth = 0
    escaped = False
    for char in answer:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "{":
            depth += 1
            if depth > MAX_NESTING:
                raise Refused(f"braces nested deeper than {MAX_NESTING}")
        elif char == "}":
            depth -= 1
            if depth < 0:
                break
    if depth != 0:
        raise Refused("unbalanced braces")


def unwrap_text(answer: str) -> str:
    """`\\text{abc}` -> `abc` (and \\textbf, \\mathrm, ...), innermost first."""
    for _ in range(MAX_NESTING):
        match = _TEXT_COMMANDS.search(answer)
        if not match:
            return answer
        start, depth = match.end(), 1
        for end in range(start, len(answer)):
            depth += {"{": 1, "}": -1}.get(answer[end], 0)
            if depth == 0:
                break
        else:
            raise Refused("unclosed \\text")
        answer = answer[: match.start()] + answer[start:end] + answer[end + 1 :]
    return answer


def normalize(answer: str) -> str:
    """A cleaned form of an answer. Same meaning, fewer spellings.

    Removes math delimiters, spacing, sizing and style commands, degree marks, units after numbers and
    thousands separators; turns "or"/"and" between values into commas (a hedge becomes a list, which
    then fails to equal a single gold value); unifies \\dfrac/\\tfrac, \\le/\\leq and unicode symbols.
    """
    check_shape(answer)
    text = answer.strip()
    for char, replacement in _UNICODE.items():
        text = text.replace(char, replacement)
    text = _strip_delimiters(text)
    text = _INNER_THOUSANDS.sub("", text)
    text = _PHANTOM.sub("", text)
    text = _PRIMES.sub(lambda m: "'" * m.group(1).count("\\prime"), text)
    text = _SPACING.sub(lambda m: m.group(1) or " ", text)
    text = _SIZING.sub("", text)
    text = _NOISE.sub("", text)
    text = _DEGREES.sub("", text)
    text = _FRAC_VARIANTS.sub(r"\\frac", text)
    text = _ALIAS_PATTERN.sub(lambda m: _ALIASES.get(m.group(0), m.group(0)), text)
    text = text.replace("\\$", "").replace("$", "").replace("\\%", "%")
    text = _HEDGE_WORDS.sub(",", text)
    text = _REPEATED_COMMAS.sub(",", text)
    text = _LEADING_RELATION.sub("", text)
    for _ in range(3):  # "5 \text{ cm}^2", then a second unit word
        text = _TRAILING_UNIT.sub("", text).strip()
    text = unwrap_text(text)
    text = text.strip().rstrip(".,").strip()
    if _THOUSANDS.match(text):
        text = re.sub(r",|\{,\}| ", "", text)
    return re.sub(r"\s+", " ", text)


def _strip_delimiters(text: str) -> str:
    pairs = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
    changed = True
    while changed:
        changed = False
        text = text.strip().rstrip(".").strip()
        for left, right in pairs:
            if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : -len(right)]
                changed = True
    return text
