"""Size bounds for exact numbers: a value that would be too large is refused before it is built.

Exact rationals are cheap only while they are small. `Fraction("1e999999999")` or `(10001/10000)**10**7`
runs for minutes inside one C call that nothing in the process can interrupt, and both are a dozen
characters of text. So every exact value the verifier builds keeps numerator and denominator under
MAX_BITS bits. The ways a short text names a huge number (a literal's exponent, a power, a factorial, a
binomial) have their result size predicted from their inputs and are refused beforehand; sums and
products of values under the bound cost a few big-integer multiplications and gcds, and their results
are checked against the bound in turn, so no value ever grows past it.

With a bound per value, an operation costs at most about 1 ms (a sum or quotient of two fractions of
the largest size, on one core here), and 1,000 characters hold about 100 of them. That bound on the
count rests on how answers are written, so one comparison also gets a work budget, `Work`, charged
before each operation with its cost in the size of its operands: the bound holds by construction.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

MAX_DIGITS = 5000  # decimal digits of the largest numerator or denominator kept exactly
MAX_BITS = int(MAX_DIGITS * math.log2(10)) + 1  # the same bound in bits (10**5000 just fits)
MAX_FACTORIAL = 1000  # 1000! has 2,568 digits
# Multiplying or dividing (gcd) b-bit numbers costs about (b/64)**2 word operations; one comparison may
# spend as much as 64 operations on numbers of the largest size (at most about 60 ms here).
WORK_LIMIT = 64 * (MAX_BITS // 64 + 1) ** 2

_LITERAL = re.compile(r"(?P<whole>\d*)(?:\.(?P<fraction>\d*))?(?:[eE](?P<exponent>[-+]?\d+))?")


class TooBig(ValueError):
    """The value would be too large to compute in bounded time; the answer is refused."""


class Work:
    """The arithmetic spent on one comparison, refused (TooBig) once it would pass WORK_LIMIT."""

    def __init__(self) -> None:
        self.spent = 0

    def charge(self, operand_bits: int) -> None:
        """Account for one operation on numbers of this many bits, before it is done."""
        self.spent += (operand_bits // 64 + 1) ** 2
        if self.spent > WORK_LIMIT:
            raise TooBig("too much arithmetic")


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
    if not digits.strip("0"):
        return Fraction(0)  # 0e999999999 is 0, however large its exponent
    exponent_text = (match["exponent"] or "0").lstrip("+-").lstrip("0")
    if len(exponent_text) > len(str(MAX_DIGITS)):  # also keeps int() off a 900-digit exponent
        raise TooBig("exponent too large")
    exponent = int(exponent_text or "0") * (-1 if (match["exponent"] or "").startswith("-") else 1)
    scale = exponent - len(match["fraction"] or "")
    if abs(scale) > MAX_DIGITS + len(digits):  # 10**scale stays cheap; the exact value is checked below
        raise TooBig("number too large")
    mantissa = int(digits)
    return bounded(Fraction(mantissa * 10**scale) if scale >= 0 else Fraction(mantissa, 10**-scale))


def power_bits(base: Fraction, exponent: float) -> float:
    """Bits of the larger of numerator and denominator of base**exponent (|exponent| * log2 of it)."""
    largest = max(abs(base.numerator), base.denominator)
    if largest <= 1 or exponent == 0:
        return 0.0  # 0, 1 and -1 to any power stay that small
    return abs(exponent) * math.log2(largest)


def power(base: Fraction, exponent: int, work: Work) -> Fraction:
    """base**exponent for an integer exponent, refused before it is computed when the result is too large."""
    if base == 0:
        if exponent < 0:
            raise ZeroDivisionError("zero to a negative power")
        return Fraction(int(exponent == 0))
    if abs(base) == 1:  # (-1)**(10**4000): the sign from the parity, no multiplication
        return base if exponent % 2 else Fraction(1)
    predicted = power_bits(base, float(exponent)) if exponent.bit_length() <= 64 else math.inf
    if predicted > MAX_BITS:
        raise TooBig("power too large")
    work.charge(int(predicted))
    return base**exponent


def factorial(n: int, work: Work) -> Fraction:
    if n > MAX_FACTORIAL:
        raise TooBig("factorial too large")
    work.charge(int(n * math.log2(n + 1)))
    return Fraction(math.factorial(n))


def binomial(n: int, k: int, work: Work) -> Fraction:
    """C(n, k) for 0 <= k; at most n bits, but slower to compute than a product of that size."""
    if n > MAX_DIGITS:
        raise TooBig("binomial too large")
    work.charge(n)
    return Fraction(math.comb(n, k))
