"""A small grammar-based parser for the LaTeX of final answers.

It turns a normalized answer into a tree of plain tuples, `(tag, *children)`; it never evaluates or
executes anything, and anything outside the grammar is a `ParseError`. Tags:

    num (Fraction)     sym (name)        const ("pi" | "e" | "i" | "inf")
    text (words; or the tokens of a set or list element the grammar refuses)
    add [terms]        neg x             mul a b          div a b           pow base exp
    root x n           func name [args]  fact x           binom n k         abs x | floor x | ceil x
    base digits b      percent x         pm a b  (a ± b)
    tuple [items] open close            set [items]      list [items]      union [parts]
    matrix [[cells]]   rel [ops] [exprs]
"""

from __future__ import annotations

import re
from fractions import Fraction

from deepscaler.reward import sizes

Node = tuple


class ParseError(ValueError):
    """The text is not an answer in the supported LaTeX math grammar."""


_TOKEN = re.compile(
    r"(?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+(?![\d.]))?)"
    r"|(?P<cmd>\\[a-zA-Z]+|\\.)"
    r"|(?P<letter>[a-zA-Z])"
    r"|(?P<op>[-+*/^_()\[\]{},;:=<>!|'&%])"
    r"|(?P<space>\s+)"
    # Any other character is a token of its own, which the grammar then refuses where it stands: a
    # set or list element holding it is refused alone (kept as text), not the whole answer.
    r"|(?P<other>.)",
    re.DOTALL,
)
_GREEK = set(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi rho sigma "
    "tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Upsilon Phi Psi Omega hbar ell".split()
)
FUNCTIONS = set(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln exp lg max min gcd lcm det".split()
)
_RELATIONS = {"=": "=", "<": "<", ">": ">", "\\leq": "<=", "\\geq": ">=", "\\neq": "!=", "\\approx": "="}
_ACCENTS = {"\\dot", "\\ddot", "\\hat", "\\bar", "\\vec", "\\tilde"}
_MATRIX_ENVS = {"pmatrix", "bmatrix", "Bmatrix", "matrix", "smallmatrix", "array"}
_CLOSERS = {"(": ")", "[": "]"}
# Groups a refused element is skipped over by. Brackets are not among them: intervals such as [0, 1)
# leave them unbalanced, and a refused element split at its commas is still split the same way
# wherever it stands.
_OPENERS = {"{", "\\{", "\\begin"}
_CLOSING = {"}", "\\}", "\\end"}
MAX_LIST_ITEMS = 200


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)  # always matches: `other` takes any single character
        kind = match.lastgroup
        if kind != "space":
            tokens.append((kind, match.group()))
        pos = match.end()
    return tokens


def parse(text: str) -> Node:
    """Parse a normalized answer into a tree (see the module docstring for node shapes)."""
    parser = _Parser(tokenize(text))
    node = parser.answer()
    if parser.pos != len(parser.tokens):
        raise ParseError(f"unexpected {parser.peek()[1]!r}")
    return node


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.pos = 0

    # -- token helpers -------------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def at(self, *values: str) -> bool:
        return self.peek()[1] in values

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end":
            raise ParseError("unexpected end")
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        if self.take()[1] != value:
            raise ParseError(f"expected {value!r}")

    # -- grammar -------------------------------------------------------------------------------------
    def answer(self) -> Node:
        items = self.items(("end",), elements=True)
        if not items:  # an empty box; as a list it would equal the empty set
            raise ParseError("empty answer")
        if len(items) == 1:
            if items[0][0] == "text":  # one refused expression is no list: the answer does not parse
                raise ParseError(f"unexpected {items[0][1]!r}")
            return items[0]
        return ("list", items)

    def items(self, closers: tuple[str, ...], elements: bool = False) -> list[Node]:
        """Comma-separated items up to a closer; `elements` for a set or list, whose order is free."""
        if self._at_closer(closers):
            return []
        read = (lambda: self.element(closers)) if elements else self.relation
        items = [read()]
        while self.at(",", ";"):
            self.take()
            items.append(read())
            if len(items) > MAX_LIST_ITEMS:
                raise ParseError("too many items")
        if elements:  # `\{0, \}` is {0}, as normalizing makes `\{0, , 1\}` {0, 1}
            items = [item for item in items if item != ("text", "")]
        return items

    def _at_closer(self, closers: tuple[str, ...]) -> bool:
        return self.peek()[1] in closers or self.peek()[0] in closers

    def element(self, closers: tuple[str, ...]) -> Node:
        """One element of a set or list; an element the grammar refuses is kept as its text.

        So a set holding such an element still equals its own reorderings (the refused element
        equals only the same text, the others compare by value), rather than equal to itself only
        when the whole string is identical.
        """
        start = self.pos
        try:
            node = self.relation()
            if self.at(",", ";") or self._at_closer(closers):
                return node
        except ValueError:  # a ParseError, or a literal too large to build (sizes.TooBig)
            pass
        self.pos, depth = start, 0
        while not (depth == 0 and (self.at(",", ";") or self._at_closer(closers))) and self.peek()[0] != "end":
            value = self.take()[1]
            depth += (value in _OPENERS) - (value in _CLOSING)
            if depth < 0:
                raise ParseError(f"unbalanced {value!r}")
        return ("text", " ".join(value for _, value in self.tokens[start : self.pos]))

    def relation(self) -> Node:
        if self.peek()[0] == "letter" and self.peek(1)[1] == "\\in":  # "x \in [1, 2]" is the set itself
            self.pos += 2
        parts = [self.union()]
        ops = []
        while self.peek()[1] in _RELATIONS:
            ops.append(_RELATIONS[self.take()[1]])
            parts.append(self.union())
        return ("rel", ops, parts) if ops else parts[0]

    def union(self) -> Node:
        parts = [self.expr()]
        while self.at("\\cup"):
            self.take()
            parts.append(self.expr())
        return ("union", parts) if len(parts) > 1 else parts[0]

    def expr(self) -> Node:
        terms = [self.signed()]
        while self.at("+", "-", "\\pm", "\\mp"):
            op = self.take()[1]
            term = self.term()
            if op in ("\\pm", "\\mp"):
                left = terms[0] if len(terms) == 1 else ("add", terms)
                terms = [("pm", left, term)]
            else:
                terms.append(("neg", term) if op == "-" else term)
        return terms[0] if len(terms) == 1 else ("add", terms)

    def signed(self) -> Node:
        if self.at("-"):
            self.take()
            return ("neg", self.signed())
        if self.at("+"):
            self.take()
            return self.signed()
        if self.at("\\pm", "\\mp"):
            self.take()
            return ("pm", ("num", Fraction(0)), self.signed())
        return self.term()

    def term(self) -> Node:
        node = self.power()
        while True:
            if self.at("*", "\\cdot", "\\times", "/", "\\div", ":"):
                op = self.take()[1]
                right = self.signed_power()
                node = ("mul", node, right) if op in ("*", "\\cdot", "\\times") else ("div", node, right)
            elif self._starts_implicit_factor():
                node = ("mul", node, self.power())
            else:
                return node

    def signed_power(self) -> Node:
        if self.at("-"):
            self.take()
            return ("neg", self.signed_power())
        return self.power()

    def _starts_implicit_factor(self) -> bool:
        kind, value = self.peek()
        if kind == "letter" or value == "(":
            return True
        if kind == "num":  # "(n-2) 2^n" multiplies; "2 3" is two numbers, not a product
            return self.pos > 0 and self.tokens[self.pos - 1][0] != "num"
        name = value[1:]
        return kind == "cmd" and (
            name in FUNCTIONS or name in _GREEK or value in _IMPLICIT_FACTOR_COMMANDS or value in _ACCENTS
        )

    def power(self) -> Node:
        node = self.postfix(self.atom())
        if self.at("^"):
            self.take()
            node = ("pow", node, self.script())
            node = self.postfix(node)
        return node

    def postfix(self, node: Node) -> Node:
        while self.at("!", "%"):
            node = ("fact", node) if self.take()[1] == "!" else ("percent", node)
        return node

    def script(self) -> Node:
        """The argument of ^, _ or a command: a braced group or a single character/token."""
        if self.at("{"):
            return self.group()
        if self.at("-"):
            self.take()
            return ("neg", self.script())
        kind, value = self.peek()
        if kind == "num":
            self._split_number()
            return ("num", sizes.literal(self.take()[1]))
        return self.atom()

    def _split_number(self) -> None:
        """`\\frac12` and `x^23` take one digit; the rest stays as the next token."""
        kind, value = self.peek()
        if len(value) > 1:
            self.tokens[self.pos : self.pos + 1] = [(kind, value[0]), (kind, value[1:])]

    def group(self) -> Node:
        self.expect("{")
        items = self.items(("}",))
        self.expect("}")
        if len(items) != 1:
            raise ParseError("a group must hold one expression")
        return items[0]

    def atom(self) -> Node:
        kind, value = self.take()
        if kind == "num":
            return self.number(value)
        if kind == "letter":
            return self.symbol(value)
        if value in ("(", "["):
            return self.bracketed(value)
        if value == "{":
            self.pos -= 1
            return self.group()
        if value == "\\{":
            items = self.items(("\\}",), elements=True)
            self.expect("\\}")
            return ("set", items)
        if value == "|":
            inner = self.expr()
            self.expect("|")
            return ("abs", inner)
        if kind == "cmd":
            return self.command(value)
        raise ParseError(f"unexpected {value!r}")

    def number(self, literal: str) -> Node:
        value = sizes.literal(literal)  # a huge exponent (1e999999999) is refused here, never built
        while self.at("'"):  # 0.003'' (arcseconds), 5' (feet): a unit mark
            self.take()
        if "." in literal and self.at("\\overline"):  # 0.1\overline{6}: a repeating tail
            self.take()
            digits = self.raw_digits()
            decimals = len(literal.split(".")[1])
            tail = Fraction(int(digits), (10 ** len(digits) - 1) * 10**decimals)
            return ("num", value + tail)
        if self.at("_"):  # 10110_2: a numeral in another base
            self.take()
            return ("base", literal, self.script())
        if self.at("\\frac") and literal.isdigit():  # 2\frac{1}{2}: a mixed number
            save = self.pos
            self.take()
            numerator, denominator = self.script(), self.script()
            if numerator[0] == "num" and denominator[0] == "num" and not self._starts_implicit_factor():
                return ("add", [("num", value), ("div", numerator, denominator)])
            self.pos = save
        return ("num", value)

    def raw_digits(self) -> str:
        self.expect("{")
        digits = ""
        while self.peek()[0] == "num":
            digits += self.take()[1]
        self.expect("}")
        if not digits.isdigit():
            raise ParseError("\\overline needs digits")
        return digits

    def symbol(self, letter: str) -> Node:
        name = letter
        if letter in _ACCENTS:  # \dot{x} is a variable of its own, named "dot(x)"
            name = f"{letter[1:]}({self.raw_script()})"
        if self.at("_"):
            self.take()
            name += "_" + self.raw_script()
        while self.at("'"):
            self.take()
            name += "'"
        if name == letter and letter in ("e", "i"):
            return ("const", letter)
        return ("sym", name)

    def raw_script(self) -> str:
        if not self.at("{"):
            return self.take()[1]
        self.take()
        parts = []
        while not self.at("}"):
            parts.append(self.take()[1])
        self.take()
        return "".join(parts)

    def bracketed(self, opener: str) -> Node:
        items = self.items((")", "]"))
        closer = self.take()[1]
        if closer not in (")", "]"):
            raise ParseError("unclosed bracket")
        if len(items) == 1 and closer == _CLOSERS[opener]:
            return items[0]
        if not items:
            raise ParseError("empty brackets")
        return ("tuple", items, opener, closer)

    def command(self, value: str) -> Node:
        name = value[1:]
        if value in _ATOM_COMMANDS:
            return _ATOM_COMMANDS[value](self)
        if name in _GREEK or value in _ACCENTS:
            return self.symbol(value if value in _ACCENTS else name)
        if name in FUNCTIONS:
            return self.function(name)
        raise ParseError(f"unsupported command {value}")

    def function(self, name: str) -> Node:
        exponent = None
        base = None
        while self.at("^", "_"):
            if self.take()[1] == "^":
                exponent = self.script()
            else:
                base = self.script()
        if self.at("("):
            self.take()
            args = self.items((")",))
            self.expect(")")
        else:
            args = [self.power()]
        if base is not None:
            args.append(base)
        node = ("func", name, args)
        return ("pow", node, exponent) if exponent is not None else node

    def frac(self) -> Node:
        return ("div", self.script(), self.script())

    def sqrt(self) -> Node:
        degree: Node = ("num", Fraction(2))
        if self.at("["):
            self.take()
            degree = self.expr()
            self.expect("]")
        return ("root", self.script(), degree)

    def delimited(self, tag: str, closer: str) -> Node:
        inner = self.expr()
        self.expect(closer)
        return (tag, inner)

    def angle_tuple(self) -> Node:
        items = self.items(("\\rangle",))
        self.expect("\\rangle")
        return ("tuple", items, "(", ")")

    def matrix(self) -> Node:
        env = self.raw_script()
        if env not in _MATRIX_ENVS:
            raise ParseError(f"unsupported environment {env}")
        if env == "array" and self.at("{"):
            self.raw_script()  # column spec such as {cc}
        rows: list[list[Node]] = [[]]
        while not self.at("\\end"):
            if self.at("&"):
                self.take()
            elif self.at("\\\\"):
                self.take()
                rows.append([])
            else:
                rows[-1].append(self.relation())
        self.take()
        if self.raw_script() != env:
            raise ParseError("mismatched \\end")
        rows = [row for row in rows if row]
        if not rows or len({len(row) for row in rows}) != 1:
            raise ParseError("ragged matrix")
        return ("matrix", rows)


_ATOM_COMMANDS = {
    "\\frac": _Parser.frac,
    "\\sqrt": _Parser.sqrt,
    "\\binom": lambda p: ("binom", p.script(), p.script()),
    "\\pi": lambda p: ("const", "pi"),
    "\\infty": lambda p: ("const", "inf"),
    "\\emptyset": lambda p: ("set", []),
    "\\lfloor": lambda p: p.delimited("floor", "\\rfloor"),
    "\\lceil": lambda p: p.delimited("ceil", "\\rceil"),
    "\\langle": _Parser.angle_tuple,
    "\\begin": _Parser.matrix,
    "\\mathbb": lambda p: _real_line(p.raw_script()),
}


_IMPLICIT_FACTOR_COMMANDS = {"\\frac", "\\sqrt", "\\binom", "\\pi", "\\lfloor", "\\lceil"}


def _real_line(letter: str) -> Node:
    if letter != "R":
        raise ParseError(f"unsupported \\mathbb{{{letter}}}")
    return ("tuple", [("neg", ("const", "inf")), ("const", "inf")], "(", ")")
