"""Equality of values SymPy must decide: irrational constants, complex numbers, expressions in variables.

No simplification search: values are compared exactly when SymPy's canonical forms already agree,
otherwise numerically at high precision (constants) or at fixed pseudo-random points (expressions),
which is both faster and more predictable than `simplify`. Only called where a time limit is enforced.
"""

from __future__ import annotations

import random
from typing import Any

import sympy

from deepscaler.reward.evaluate import SympyBackend
from deepscaler.reward.latex import Node

PRECISION = 50  # significant digits for numeric comparison
CONSTANT_TOLERANCE = sympy.Float("1e-35", PRECISION)
POINT_TOLERANCE = sympy.Float("1e-20", PRECISION)
POINTS_NEEDED = 3
POINTS_TRIED = 8


class SymbolicEquality:
    def __init__(self) -> None:
        self.backend = SympyBackend()
        rng = random.Random(20250210)
        # Points away from 0 and 1, where distinct expressions coincide most often.
        self.points = [[sympy.Rational(rng.randint(1300, 4700), 1000) for _ in range(16)] for _ in range(8)]

    def equal(self, a: Node, b: Node) -> bool:
        return self.values_equal(self.backend.evaluate(a), self.backend.evaluate(b))

    def values_equal(self, a: Any, b: Any) -> bool:
        if a == b:
            return True
        if _improper(a) or _improper(b):
            return False
        symbols = sorted(a.free_symbols | b.free_symbols, key=str)
        if not symbols:
            if a.is_Rational and b.is_Rational:
                return False
            return _close(a.evalf(PRECISION), b.evalf(PRECISION), CONSTANT_TOLERANCE)
        agreed = 0
        for substitution in self._substitutions(symbols):
            va, vb = a.evalf(30, subs=substitution), b.evalf(30, subs=substitution)
            if not (_finite(va) and _finite(vb)):
                continue
            if not _close(va, vb, POINT_TOLERANCE):
                return False
            agreed += 1
            if agreed >= POINTS_NEEDED:
                return True
        return False

    def same_equation(self, parts_a: list[Node], parts_b: list[Node]) -> bool:
        """l1 = r1 and l2 = r2 are the same equation when l1 - r1 = k (l2 - r2) for a constant k != 0."""
        da = self.backend.evaluate(parts_a[0]) - self.backend.evaluate(parts_a[1])
        db = self.backend.evaluate(parts_b[0]) - self.backend.evaluate(parts_b[1])
        if _improper(da) or _improper(db):
            return False
        symbols = sorted(da.free_symbols | db.free_symbols, key=str)
        ratios = []
        for substitution in self._substitutions(symbols):
            va, vb = da.evalf(30, subs=substitution), db.evalf(30, subs=substitution)
            if not (_finite(va) and _finite(vb)) or abs(vb) < POINT_TOLERANCE:
                continue
            ratios.append(va / vb)
            if len(ratios) >= POINTS_NEEDED:
                break
        if len(ratios) < POINTS_NEEDED or abs(ratios[0]) < POINT_TOLERANCE:
            return False
        return all(_close(ratio, ratios[0], POINT_TOLERANCE) for ratio in ratios)

    def _substitutions(self, symbols: list) -> list[dict]:
        if len(symbols) > 16:
            return []
        return [dict(zip(symbols, values, strict=False)) for values in self.points[:POINTS_TRIED]]


def _improper(value: Any) -> bool:
    return bool(value.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan))


def _finite(value: Any) -> bool:
    return bool(value.is_number) and not _improper(value)


def _close(a: Any, b: Any, tolerance: Any) -> bool:
    if not (_finite(a) and _finite(b)):
        return False
    scale = max(sympy.Integer(1), abs(a), abs(b))
    return bool(abs(a - b) <= tolerance * scale)
