"""Give a parsed scalar a value, with exact rationals (fast, in-process) or SymPy (everything else).

Both backends refuse work whose size cannot be bounded before it starts: power towers, huge
factorials, numbers with more than MAX_DIGITS digits (see sizes.py for how the rational one keeps
every value it builds under that bound).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from deepscaler.reward import sizes
from deepscaler.reward.latex import Node
from deepscaler.reward.sizes import MAX_BITS, MAX_DIGITS, MAX_FACTORIAL, TooBig

__all__ = ["MAX_DIGITS", "NeedsSymbolic", "RationalBackend", "SympyBackend", "TooBig", "Undefined"]


class NeedsSymbolic(Exception):
    """The rational backend cannot decide this value; SymPy must."""


class Undefined(ValueError):
    """The expression has no value (division by zero, a bad numeral)."""


def _check_power_size(base: Any, exponent: Any) -> None:
    """Refuse base**exponent when its size would pass the bound, before computing it.

    An exact rational base is sized by its numerator and denominator (1.0001 = 10001/10000 grows
    14 bits per unit of exponent though its logarithm is tiny); any other base by its magnitude.
    """
    if isinstance(base, Fraction) or getattr(base, "is_Rational", False):
        exact = Fraction(int(base.numerator), int(base.denominator))
        if sizes.power_bits(exact, _magnitude(exponent)) > MAX_BITS:
            raise TooBig("power too large")
        return
    digits_per_unit = abs(_log10_magnitude(base))
    if digits_per_unit == 0 or exponent == 0:
        return
    if _magnitude(exponent) * digits_per_unit > MAX_DIGITS:
        raise TooBig("power too large")


def _log10_magnitude(value: Any) -> float:
    """log10 |value| of a non-rational number (pi, e); -inf for 0."""
    return math.log10(_magnitude(value)) if _magnitude(value) > 0 else -math.inf


def _magnitude(value: Any) -> float:
    """|value| as a float that never overflows (huge values saturate, which is enough for the guard)."""
    try:
        return abs(float(value))
    except (OverflowError, TypeError):
        return math.inf


def _base_numeral(digits: str, base: Fraction) -> int:
    if base.denominator != 1 or not 2 <= base <= 36 or "." in digits:
        raise Undefined("bad base")
    try:
        return int(digits, int(base))
    except ValueError as error:
        raise Undefined(str(error)) from None


class RationalBackend:
    """Exact rationals with Python's Fraction. Raises NeedsSymbolic for anything irrational or symbolic.

    Every value it builds stays within sizes.MAX_BITS, and all its steps together within one
    sizes.Work budget, so one backend (one comparison) costs a bounded time. `evaluate` values each
    node once per backend: comparing two sets element by element asks for the same values again.
    """

    def __init__(self) -> None:
        self.work = sizes.Work()
        # id(node) -> (node, value or the refusal); the node is kept so that its id is never reused
        self._known: dict[int, tuple[Node, Fraction | tuple[type, tuple]]] = {}

    def evaluate(self, node: Node) -> Fraction:
        if node[0] == "num":
            return node[1]
        known = self._known.get(id(node))
        if known is None or known[0] is not node:
            try:
                known = (node, self._evaluate(node))
            except (NeedsSymbolic, TooBig, Undefined) as error:
                known = (node, (type(error), error.args))
            self._known[id(node)] = known
        if isinstance(known[1], tuple):
            kind, args = known[1]
            raise kind(*args)
        return known[1]

    def _evaluate(self, node: Node) -> Fraction:
        tag = node[0]
        if tag == "num":
            return node[1]  # built by sizes.literal, within the bound
        if tag == "neg":
            return -self._evaluate(node[1])
        if tag == "add":
            total = Fraction(0)
            for term in node[1]:
                value = self._evaluate(term)
                self.work.charge(max(sizes.bits(total), sizes.bits(value)))
                total = sizes.bounded(total + value)
            return total
        if tag in ("mul", "div"):
            left, right = self._evaluate(node[1]), self._evaluate(node[2])
            self.work.charge(max(sizes.bits(left), sizes.bits(right)))
            if tag == "mul":
                return sizes.bounded(left * right)
            if right == 0:
                raise Undefined("division by zero")
            return sizes.bounded(left / right)
        if tag == "pow":
            return self._power(self._evaluate(node[1]), self._evaluate(node[2]))
        if tag == "root":
            return self._root(self._evaluate(node[1]), self._evaluate(node[2]))
        if tag == "fact":
            n = self._evaluate(node[1])
            if n.denominator != 1 or n < 0:
                raise NeedsSymbolic
            return sizes.factorial(int(n), self.work)
        if tag == "binom":
            n, k = self._evaluate(node[1]), self._evaluate(node[2])
            if n.denominator != 1 or k.denominator != 1 or n < 0 or k < 0:
                raise NeedsSymbolic
            return sizes.binomial(int(n), int(k), self.work)
        if tag == "abs":
            return abs(self._evaluate(node[1]))
        if tag in ("floor", "ceil"):
            value = self._evaluate(node[1])
            self.work.charge(sizes.bits(value))
            return Fraction(math.floor(value) if tag == "floor" else math.ceil(value))
        if tag == "base":
            return Fraction(_base_numeral(node[1], self._evaluate(node[2])))
        raise NeedsSymbolic

    def _power(self, base: Fraction, exponent: Fraction) -> Fraction:
        if exponent.denominator != 1:
            root = self._root(base, Fraction(exponent.denominator))
            return self._power(root, Fraction(exponent.numerator))
        if base == 0 and exponent < 0:
            raise Undefined("division by zero")
        return sizes.power(base, int(exponent), self.work)

    def _root(self, radicand: Fraction, degree: Fraction) -> Fraction:
        """Exact only for perfect powers (sqrt(9/4) = 3/2); anything else is irrational: SymPy's job."""
        if degree.denominator != 1 or degree < 2 or degree > 64 or radicand < 0:
            raise NeedsSymbolic
        self.work.charge(sizes.bits(radicand))
        n = int(degree)
        parts = []
        for part in (radicand.numerator, radicand.denominator):
            root = math.isqrt(part) if n == 2 else round(part ** (1.0 / n)) if part < 2**1000 else -1
            if root < 0 or root**n != part:
                raise NeedsSymbolic
            parts.append(root)
        return Fraction(parts[0], parts[1])


class SympyBackend:
    """SymPy expressions built node by node from the tree: no string is ever handed to sympify."""

    def __init__(self) -> None:
        import sympy  # imported here: the fast path and the parent process never need it

        self.sp = sympy
        self.constants = {"pi": sympy.pi, "e": sympy.E, "i": sympy.I, "inf": sympy.oo}
        self.functions: dict[str, Any] = {
            "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot, "sec": sympy.sec,
            "csc": sympy.csc, "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
            "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh, "exp": sympy.exp, "ln": sympy.log,
            "lg": lambda x: sympy.log(x, 10), "log": sympy.log, "max": sympy.Max, "min": sympy.Min,
            "gcd": sympy.gcd, "lcm": sympy.lcm,
        }

    def evaluate(self, node: Node) -> Any:
        sp, tag = self.sp, node[0]
        if tag == "num":
            return sp.Rational(node[1].numerator, node[1].denominator)
        if tag == "sym":
            return sp.Symbol(node[1])
        if tag == "const":
            return self.constants[node[1]]
        if tag == "neg":
            return -self.evaluate(node[1])
        if tag == "add":
            return sp.Add(*(self.evaluate(term) for term in node[1]))
        if tag == "mul":
            return self.evaluate(node[1]) * self.evaluate(node[2])
        if tag == "div":
            return self.evaluate(node[1]) / self.evaluate(node[2])
        if tag == "pow":
            return self._power(self.evaluate(node[1]), self.evaluate(node[2]))
        if tag == "root":
            radicand, degree = self.evaluate(node[1]), self.evaluate(node[2])
            if degree.is_Integer and degree % 2 == 1 and radicand.is_negative:
                return -self._power(-radicand, 1 / degree)  # the real odd root: cbrt(-8) = -2
            return self._power(radicand, 1 / degree)
        if tag == "fact":
            n = self.evaluate(node[1])
            if n.is_Number and (not n.is_Integer or n > MAX_FACTORIAL):
                raise TooBig("factorial too large")
            return sp.factorial(n)
        if tag == "binom":
            n = self.evaluate(node[1])
            if n.is_Number and n > MAX_DIGITS:
                raise TooBig("binomial too large")
            return sp.binomial(n, self.evaluate(node[2]))
        if tag in ("abs", "floor", "ceil"):
            function = {"abs": sp.Abs, "floor": sp.floor, "ceil": sp.ceiling}[tag]
            return function(self.evaluate(node[1]))
        if tag == "func":
            args = [self.evaluate(arg) for arg in node[2]]
            if node[1] not in self.functions:
                raise Undefined(f"unknown function {node[1]}")
            return self.functions[node[1]](*args)
        if tag == "base":
            return sp.Integer(_base_numeral(node[1], RationalBackend().evaluate(node[2])))
        raise Undefined(f"no scalar value for {tag}")

    def _power(self, base: Any, exponent: Any) -> Any:
        if exponent.is_Number and (base.is_Number or base.is_NumberSymbol):
            _check_power_size(base, exponent)
        elif exponent.is_Number and abs(exponent) > MAX_DIGITS * 4:
            raise TooBig("exponent too large")
        elif base.is_Number and not exponent.free_symbols:
            # A numeric exponent that SymPy keeps unevaluated (pi, sqrt 2): bound it numerically first.
            _check_power_size(base, exponent.evalf(15))
        return self.sp.Pow(base, exponent)
