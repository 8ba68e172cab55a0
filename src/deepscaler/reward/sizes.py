"""Size bounds for exact numbers: a value that would be too large is refused before it is built.

Exact rationals are cheap only while they are small. `Fraction("1e999999999")` or `(10001/10000)**10**7`
runs for minutes inside one C call that nothing in the process can interrupt, and both are a dozen
characters of text. So every exact value the verifier builds keeps numerator and denominator under
MAX_BITS bits. The ways a short text names a huge number (a literal's exponent, a power, a factorial, a
binomial) have their result size predicted from their inputs and are refused beforehand; sums and
products of values under the bound cost a few big-integer multiplications and gcds, and their results
are checked against the bound in turn, so no value ever grows past it.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

MAX_DIGITS = 5000  # decimal digits of the largest numerator or denominator kept exactly
MAX_BITS = int(MAX_DIGITS * math.log2(10)) + 1  # the same bound in bits (10**5000 just fits)
MAX_FACTORIAL = 1000  # 1000! has 2,568 digits

_LITERAL = re.compile(r"(?P<whole>\d*)(?:\.(?P<fraction>\d*))?(?:[eE](?P<exponent>[-+]?\d+))?")


class TooBig(ValueError):
    """The value would be too large to compute in bounded time; the answer is refused."""


def bits(value: Fraction) -> int:
    """The larger bit length of numerator and denominator: the size every bound here is about."""
    return max(value.numerator.bit_length(), value.denominator.bit_length())


def bounded(value: Fraction) -> Fraction:
    """The value itself, or TooBig when it is past the bound."""
    if bits(value) > MAX_BITS:
        raise TooBig("number too large")
    return value


def literal(text: str) -> Fraction:
    """A decimal literal (`12`, `0.5`, `.5`, `1.5e-3`, `2E+10`) as an exact value, refused when too large.

    The exponent is read from its digits, never by building 10**exponent first.
    """
    match = _LITERAL.fullmatch(text)
    if match is None or not (match["whole"] or match["fraction"]):
        raise ValueError(f"not a decimal literal: {text!r}")
    digits = match["whole"] + (match["fraction"] or "")
    exponent_text = (match["exponent"] or "0").lstrip("+-").lstrip("0")
    if len(exponent_text) > len(str(MAX_DIGITS)):  # also keeps int() off a 900-digit exponent
        raise TooBig("exponent too large")
    exponent = int(exponent_text or "0") * (-1 if (match["exponent"] or "").startswith("-") else 1)
    scale = exponent - len(match["fraction"] or "")
    if len(digits) + abs(scale) > MAX_DIGITS:
        raise TooBig("number too large")
    mantissa = int(digits)
    return Fraction(mantissa * 10**scale) if scale >= 0 else Fraction(mantissa, 10**-scale)


def power_bits(base: Fraction, exponent: float) -> float:
    """Bits of the larger of numerator and denominator of base**exponent (|exponent| * log2 of it)."""
    largest = max(abs(base.numerator), base.denominator)
    if largest <= 1 or exponent == 0:
        return 0.0  # 0, 1 and -1 to any power stay that small
    return abs(exponent) * math.log2(largest)


def power(base: Fraction, exponent: int) -> Fraction:
    """base**exponent for an integer exponent, refused before it is computed when the result is too large."""
    if base == 0:
        if exponent < 0:
            raise ZeroDivisionError("zero to a negative power")
        return Fraction(int(exponent == 0))
    if abs(base) == 1:  # (-1)**(10**4000): the sign from the parity, no multiplication
        return base if exponent % 2 else Fraction(1)
    if exponent.bit_length() > 64 or power_bits(base, float(exponent)) > MAX_BITS:
        raise TooBig("power too large")
    return base**exponent


def factorial(n: int) -> Fraction:
    if n > MAX_FACTORIAL:
        raise TooBig("factorial too large")
    return Fraction(math.factorial(n))


def binomial(n: int, k: int) -> Fraction:
    """C(n, k) for 0 <= k; its size is at most n bits, so n is what is bounded."""
    if n > MAX_BITS:
        raise TooBig("binomial too large")
    return Fraction(math.comb(n, k))
