"""Mathematical equality of two answers: structure first (sets, tuples, intervals, equations), then values.

`answers_equal(given, gold, symbolic=False)` decides with exact rationals only and raises NeedsSymbolic
when that is not enough; with symbolic=True it also uses SymPy. The public, time-bounded entry point
(`deepscaler.reward.is_equivalent`) runs the symbolic step in a worker process it can kill.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from itertools import product

from deepscaler.reward.evaluate import NeedsSymbolic, RationalBackend, TooBig, Undefined
from deepscaler.reward.latex import FUNCTIONS, Node, ParseError, parse
from deepscaler.reward.normalize import Refused, normalize

# "(C)", "C", "(C) 12": one choice; "(C) , (D)" (a hedge) is none.
_LETTER_CHOICE = re.compile(r"^\(?([A-E])\)?(?:[\s:.][^,;()]*)?$")
_WORDS = re.compile(r"^[A-Za-z][A-Za-z '\-]*$")
_NUMBER_WORDS = {
    word: index
    for index, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_INF: Node = ("const", "inf")
_NEG_INF: Node = ("neg", _INF)
_HUNDRED: Node = ("num", Fraction(100))
_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
MAX_PM_BRANCHES = 8


@dataclass(frozen=True)
class Prepared:
    """An answer made ready for comparison; tree is None when it does not parse."""

    text: str
    tree: Node | None
    words: str | None  # a word answer, lower-cased ("evelyn", "3" for "three")
    letter: str | None  # a multiple-choice letter


class UnusableAnswer(ValueError):
    """The answer was refused or does not parse."""


@lru_cache(maxsize=8192)
def prepare(answer: str) -> Prepared:
    """Normalize and parse once; golds repeat across the samples of a problem, so this is cached."""
    try:
        text = normalize(answer)
    except Refused as error:
        raise UnusableAnswer(str(error)) from None
    letter_match = _LETTER_CHOICE.match(text)
    words = _as_words(text)
    tree = None
    if words is None or words.isdigit():
        try:
            tree = parse(text if words is None else words)
        except (ParseError, ValueError, ZeroDivisionError, RecursionError):
            tree = None
    return Prepared(text, tree, words, letter_match.group(1) if letter_match else None)


def _as_words(text: str) -> str | None:
    if not _WORDS.match(text) or not any(len(run) >= 3 for run in re.findall(r"[A-Za-z]+", text)):
        return None
    lowered = " ".join(text.lower().replace("-", " ").split())
    if lowered in FUNCTIONS:
        return None
    return str(_NUMBER_WORDS[lowered]) if lowered in _NUMBER_WORDS else lowered


def answers_equal(given: str, gold: str, symbolic: bool = False) -> bool:
    """True when the two answer strings are mathematically equal (see the module docstring)."""
    try:
        mine, truth = prepare(given), prepare(gold)
    except UnusableAnswer:
        return False
    if mine.text == truth.text:
        return True
    if truth.letter and not truth.tree:
        return mine.letter == truth.letter
    if truth.letter and mine.letter and (mine.text.startswith("(") or truth.text.startswith("(")):
        return mine.letter == truth.letter  # "(C)" against "C": a choice, not a variable
    if mine.words is not None or truth.words is not None:
        if mine.words == truth.words or (mine.words or mine.text) == (truth.words or truth.text):
            return True
        if not (mine.words or "").isdigit() and not (truth.words or "").isdigit():
            return False
    if mine.tree is None or truth.tree is None:
        return False
    try:
        return _same(_canonical(mine.tree), _canonical(truth.tree), _Scalars(symbolic))
    except (TooBig, Undefined, ParseError, ZeroDivisionError, RecursionError):
        return False


# -- structure ----------------------------------------------------------------------------------------
def _canonical(node: Node) -> Node:
    """One spelling per structure: hedges and ± become sets, inequalities become intervals."""
    tag = node[0]
    if tag in ("list", "set"):
        items = []
        for item in node[1]:  # {1 ± √5, -2} has three elements
            items.extend(_expand_pm(item) if _contains_pm(item) else [_canonical(item)])
        if tag == "list" and all(item[0] in ("interval", "union") for item in items):
            return _union(items)
        return (tag, items)
    if tag == "tuple":
        items, opener, closer = node[1], node[2], node[3]
        if len(items) == 2 and (opener, closer) != ("(", ")"):
            return ("interval", items[0], items[1], opener == "[", closer == "]")
        return ("tuple", [_canonical(item) for item in items], opener, closer)
    if tag == "union":
        return _union([_canonical(part) for part in node[1]])
    if tag == "rel":
        return _relation(node[1], node[2])
    if tag == "matrix":
        return node
    branches = _expand_pm(node)
    return ("set", branches) if len(branches) > 1 else branches[0]


def _union(parts: list[Node]) -> Node:
    intervals = []
    for part in parts:
        if part[0] == "union":
            intervals.extend(part[1])
        elif part[0] == "tuple" and len(part[1]) == 2 and part[2] == "(":
            intervals.append(("interval", part[1][0], part[1][1], False, False))
        elif part[0] == "interval":
            intervals.append(part)
        else:
            return ("list", parts)
    return ("union", intervals) if len(intervals) > 1 else intervals[0]


def _relation(ops: list[str], parts: list[Node]) -> Node:
    variables = [i for i, part in enumerate(parts) if part[0] == "sym"]
    constant = [i for i, part in enumerate(parts) if not _has_symbols(part)]
    if set(ops) <= set(_FLIP) and len(variables) == 1 and len(constant) == len(parts) - 1:
        where = variables[0]
        if len(parts) == 2:
            op, bound = (ops[0], parts[1]) if where == 0 else (_FLIP[ops[0]], parts[0])
            if op in ("<", "<="):
                return ("interval", _NEG_INF, bound, False, op == "<=")
            return ("interval", bound, _INF, op == ">=", False)
        if len(parts) == 3 and where == 1:
            low_op, high_op = ops
            if low_op in (">", ">=") and high_op in (">", ">="):
                return ("interval", parts[2], parts[0], high_op == ">=", low_op == ">=")
            if low_op in ("<", "<=") and high_op in ("<", "<="):
                return ("interval", parts[0], parts[2], low_op == "<=", high_op == "<=")
    return ("rel", ops, parts)


def _has_symbols(node: Node) -> bool:
    if node[0] == "sym":
        return True
    return any(isinstance(child, tuple) and _has_symbols(child) for child in _children(node))


def _children(node: Node) -> list:
    children = []
    for child in node[1:]:
        if isinstance(child, list):
            children.extend(c for c in child if isinstance(c, tuple))
        elif isinstance(child, tuple):
            children.append(child)
    return children


def _expand_pm(node: Node) -> list[Node]:
    """a ± b -> [a + b, a - b], through the whole tree (bounded by MAX_PM_BRANCHES)."""
    if not _contains_pm(node):
        return [node]
    if node[0] == "pm":
        pairs = list(product(_expand_pm(node[1]), _expand_pm(node[2])))
        branches = [("add", [left, right]) for left, right in pairs]
        branches += [("add", [left, ("neg", right)]) for left, right in pairs]
    else:
        options = []
        for child in node[1:]:
            if isinstance(child, tuple):
                options.append(_expand_pm(child))
            elif isinstance(child, list):
                options.append([list(combo) for combo in product(*(_expand_pm(item) for item in child))])
            else:
                options.append([child])
        branches = [(node[0], *combo) for combo in product(*options)]
    if len(branches) > MAX_PM_BRANCHES:
        raise TooBig("too many ± branches")
    return branches


def _contains_pm(node: Node) -> bool:
    return node[0] == "pm" or any(_contains_pm(child) for child in _children(node))


def _definition_value(relation: Node) -> Node | None:
    """`x = 3`, `f(x) = 2x`, `2x + 1 = y`: the side that is not a bare name."""
    if relation[0] != "rel" or relation[1] != ["="] or len(relation[2]) != 2:
        return None
    left, right = relation[2]
    if _is_name(left):
        return right
    if _is_name(right):
        return left
    return None


def _is_name(node: Node) -> bool:
    """A symbol, or a function name applied to symbols (`N(n)` parses as N·n)."""
    return node[0] == "sym" or (node[0] == "mul" and node[1][0] == "sym" and _is_name(node[2]))


def _same(a: Node, b: Node, scalars: _Scalars) -> bool:
    if (a[0] == "rel") != (b[0] == "rel"):
        a = _canonical(_definition_value(a) or a) if a[0] == "rel" else a
        b = _canonical(_definition_value(b) or b) if b[0] == "rel" else b
    ta, tb = a[0], b[0]
    if ta in ("set", "list") and tb in ("set", "list"):
        return _same_unordered(a[1], b[1], scalars)
    if {ta, tb} <= {"tuple", "list"}:
        return _same_ordered(a[1], b[1], scalars) and (ta != tb or ta == "list" or a[2:] == b[2:])
    if ta == "union" and tb == "union":
        return _same_unordered(a[1], b[1], scalars)
    if ta == "interval" and tb == "interval":
        return a[3:] == b[3:] and scalars.equal(a[1], b[1]) and scalars.equal(a[2], b[2])
    if {ta, tb} == {"interval", "tuple"}:
        interval, pair = (a, b) if ta == "interval" else (b, a)
        return (
            interval[3:] == (False, False) and pair[2:] == ("(", ")") and len(pair[1]) == 2
            and scalars.equal(interval[1], pair[1][0]) and scalars.equal(interval[2], pair[1][1])
        )
    if ta == "matrix" or tb == "matrix":
        return _same_ordered(_matrix_cells(a), _matrix_cells(b), scalars) and (
            ta != tb or [len(r) for r in a[1]] == [len(r) for r in b[1]]
        )
    if ta == "rel" and tb == "rel":
        return scalars.same_relation(a, b)
    if ta in _STRUCTURES or tb in _STRUCTURES:
        return False
    return scalars.equal(a, b)


_STRUCTURES = {"set", "list", "tuple", "union", "interval", "matrix", "rel"}


def _matrix_cells(node: Node) -> list[Node]:
    """Cells in row order; a tuple counts as a vector so (1, 2) equals a 2x1 or 1x2 matrix."""
    if node[0] == "matrix":
        rows = node[1]
        return [cell for row in rows for cell in row]
    return node[1] if node[0] == "tuple" else [("text", "not a vector")]


def _same_ordered(xs: list[Node], ys: list[Node], scalars: _Scalars) -> bool:
    return len(xs) == len(ys) and all(_same(x, y, scalars) for x, y in zip(xs, ys, strict=False))


def _same_unordered(xs: list[Node], ys: list[Node], scalars: _Scalars) -> bool:
    """Multiset equality under `_same` (greedy matching is exact here: equality is transitive).

    Plain exact numbers, the usual elements, are matched by counting values: linear, where matching
    pair by pair is quadratic (200 elements against their reversal took 0.16 s that way).
    """
    if len(xs) != len(ys):
        return False
    counts = scalars.value_counts(xs), scalars.value_counts(ys)
    if counts[0] is not None and counts[1] is not None:
        return counts[0] == counts[1]
    xs, ys = _unshared(xs, ys)
    remaining = list(ys)
    for x in xs:
        for index, y in enumerate(remaining):
            if _same(x, y, scalars):
                del remaining[index]
                break
        else:
            return False
    return True


def _unshared(xs: list[Node], ys: list[Node]) -> tuple[list[Node], list[Node]]:
    """Both lists less the elements they share as identical trees, which pair off first.

    So a set equals its own reorderings whatever its elements cost to value (one refused as too large
    equals only itself); pairing identical elements first never loses a matching.
    """
    shared = Counter(map(_frozen, xs)) & Counter(map(_frozen, ys))
    if not shared:
        return xs, ys

    def rest(items: list[Node]) -> list[Node]:
        left, kept = Counter(shared), []
        for item in items:
            key = _frozen(item)
            if left[key]:
                left[key] -= 1
            else:
                kept.append(item)
        return kept

    return rest(xs), rest(ys)


def _frozen(node: Node) -> tuple:
    """A hashable copy of a tree, its lists made tuples (not repr: a 5,000-digit int has no str).

    Numbers become (numerator, denominator): hashing a pair of ints is far cheaper than a Fraction.
    """
    return tuple(
        _frozen(child) if isinstance(child, (tuple, list))
        else (child.numerator, child.denominator) if isinstance(child, Fraction) else child
        for child in node
    )


# -- scalars ------------------------------------------------------------------------------------------
class _Scalars:
    """Equality of scalar trees: exact rationals first, SymPy only when allowed and needed."""

    def __init__(self, symbolic: bool):
        self.symbolic = symbolic
        self.rational = RationalBackend()
        self._sympy = None
        self._readings: dict[int, tuple[Node, list[Node]]] = {}  # as in RationalBackend: made once

    def value_counts(self, items: list[Node]) -> Counter | None:
        """How often each value occurs, when every item is a plain exact number; else None."""
        counts: Counter = Counter()
        for item in items:
            if item[0] in _STRUCTURES or item[0] in ("percent", "text"):
                return None
            try:
                value = self.rational.evaluate(item)
                counts[value.numerator, value.denominator] += 1  # cheaper to hash than the Fraction
            except (NeedsSymbolic, TooBig, Undefined, ZeroDivisionError):
                return None
        return counts

    def equal(self, a: Node, b: Node) -> bool:
        """Value equality; a value refused as too large or undefined equals only the very same tree.

        Refusing per pair rather than for the whole answer keeps a set that holds such a value equal
        to its own reorderings, as it is to its own text.
        """
        if a == b:
            return True
        if a[0] == "text" or b[0] == "text":
            return False
        for x in self._percent_readings(a):
            for y in self._percent_readings(b):
                try:
                    if self._equal_values(x, y):
                        return True
                except (TooBig, Undefined, ZeroDivisionError):
                    continue
        return False

    def _equal_values(self, a: Node, b: Node) -> bool:
        infinities = (_infinity_sign(a), _infinity_sign(b))
        if infinities != (0, 0):
            return infinities[0] == infinities[1]
        try:
            return self.rational.evaluate(a) == self.rational.evaluate(b)
        except NeedsSymbolic:
            if not self.symbolic:
                raise
        return self._symbolic().equal(a, b)

    def same_relation(self, a: Node, b: Node) -> bool:
        if a[1] != b[1] and a[1] != [_FLIP.get(op, op) for op in reversed(b[1])]:
            return False
        if a[1] == b[1] and all(self.equal(x, y) for x, y in zip(a[2], b[2], strict=False)):
            return True
        if a[1] == ["="] and b[1] == ["="]:
            return self._symbolic_required().same_equation(a[2], b[2])
        return a[1] != b[1] and all(self.equal(x, y) for x, y in zip(a[2], reversed(b[2]), strict=False))

    def _percent_readings(self, node: Node) -> list[Node]:
        known = self._readings.get(id(node))
        if known is None or known[0] is not node:
            known = self._readings[id(node)] = (node, _percent_readings(node))
        return known[1]

    def _symbolic_required(self):
        if not self.symbolic:
            raise NeedsSymbolic
        return self._symbolic()

    def _symbolic(self):
        if self._sympy is None:
            from deepscaler.reward.symbolic import SymbolicEquality

            self._sympy = SymbolicEquality()
        return self._sympy


def _percent_readings(node: Node) -> list[Node]:
    """`50%` may be meant as 50 or as 0.5: both readings are accepted."""
    if node[0] == "percent":
        return [node[1], ("div", node[1], _HUNDRED)]
    return [node]


def _infinity_sign(node: Node) -> int:
    if node == _INF:
        return 1
    if node[0] == "neg":
        return -_infinity_sign(node[1])
    return 0


def answer_key(answer: str | None) -> tuple | None:
    """A hashable key under which equal answers usually coincide (for majority voting).

    Exact rational values key by value (so 1/2 and 0.5 vote together); anything else keys by its
    normalized text. None for no answer or an unusable one.
    """
    if answer is None:
        return None
    try:
        prepared = prepare(answer)
    except UnusableAnswer:
        return None
    if prepared.tree is not None:
        try:
            return ("value", RationalBackend().evaluate(_canonical(prepared.tree)))
        except (NeedsSymbolic, TooBig, Undefined, IndexError, TypeError, KeyError):
            pass
    return ("text", prepared.words or prepared.text)
