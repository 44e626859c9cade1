"""Derived-metric formulas: + - * / parentheses, decimal constants and metric keys.

A small recursive-descent parser (never `eval`, and more precise than Python's
own parser about *where* a formula is wrong: every error names its column).
Evaluation is exact decimal arithmetic; a division by zero, a missing
operand or a result of MAX_RESULT or more in absolute value gives None, never
an error. Constants have at most MAX_DIGITS digits, and parentheses and signs
nest at most MAX_DEPTH deep (the parser recurses on them; evaluation does not).

    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "/") unary)*
    unary   := ("-" | "+") unary | primary
    primary := NUMBER | KEY | "(" expr ")"
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shared.errors import Invalid

KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d+)?|\.\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/()]))")

MAX_DIGITS = 20  # digits of a constant, before and after the point together
MAX_DEPTH = 50  # parentheses and unary signs inside one another
# Results are computed at 40 significant digits (compute.compute), so from 10^40 on they are no longer
# exact; they are undefined (None) instead of growing until the answer cannot be formatted.
MAX_RESULT = Decimal(10) ** 40

Node = tuple[Any, ...]  # ("num", Decimal) | ("ref", key) | ("neg", node) | ("bin", op, left, right)


def valid_key(key: str) -> bool:
    return bool(KEY_RE.match(key)) and not keyword.iskeyword(key)


@dataclass(frozen=True)
class Formula:
    source: str
    tree: Node
    references: frozenset[str]

    def evaluate(self, values: dict[str, Decimal | None]) -> Decimal | None:
        return _eval(self.tree, values)


class _Parser:
    def __init__(self, text: str, field: str):
        self.text = text
        self.field = field
        self.tokens: list[tuple[str, str, int]] = []  # kind, text, column (1-based)
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                col = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
                self.fail(f"unexpected {text[col - 1]!r} at column {col}")
            assert m is not None  # fail() raises
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind), m.start(kind) + 1))
            pos = m.end()
        self.i = 0
        self.depth = 0
        self.refs: set[str] = set()

    def fail(self, message: str) -> None:
        raise Invalid.on(self.field, f"syntax error: {message}", "syntax")

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def end_column(self) -> int:
        return len(self.text.rstrip()) + 1

    def parse(self) -> Node:
        if not self.tokens:
            self.fail("the formula is empty (column 1)")
        node = self.expr()
        tok = self.peek()
        if tok is not None:
            self.fail(f"unexpected {tok[1]!r} at column {tok[2]}")
        return node

    def expr(self) -> Node:
        node = self.term()
        while (tok := self.peek()) is not None and tok[1] in "+-" and tok[0] == "op":
            self.i += 1
            node = ("bin", tok[1], node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while (tok := self.peek()) is not None and tok[1] in "*/" and tok[0] == "op":
            self.i += 1
            node = ("bin", tok[1], node, self.unary())
        return node

    def nest(self, col: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(
                f"nested too deeply at column {col} (at most {MAX_DEPTH} parentheses and signs inside one another)"
            )

    def unary(self) -> Node:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in "+-":
            self.i += 1
            self.nest(tok[2])
            inner = self.unary()
            self.depth -= 1
            return ("neg", inner) if tok[1] == "-" else inner
        return self.primary()

    def primary(self) -> Node:
        tok = self.peek()
        if tok is None:
            self.fail(f"a metric key, number or '(' expected at column {self.end_column()} (end of formula)")
        kind, text, col = tok  # type: ignore[misc]
        self.i += 1
        if kind == "num":
            if sum(ch.isdigit() for ch in text) > MAX_DIGITS:
                self.fail(f"the constant at column {col} has more than {MAX_DIGITS} digits")
            return ("num", Decimal(text))
        if kind == "name":
            if not valid_key(text):
                self.fail(f"{text!r} at column {col} is not a metric key (lower-case letters, digits, _)")
            nxt = self.peek()
            if nxt is not None and nxt[1] == "(":
                self.fail(f"functions are not allowed ({text!r} at column {col})")
            self.refs.add(text)
            return ("ref", text)
        if text == "(":
            self.nest(col)
            node = self.expr()
            self.depth -= 1
            close = self.peek()
            if close is None or close[1] != ")":
                where = close[2] if close else self.end_column()
                self.fail(f"')' expected at column {where} to close the '(' at column {col}")
            self.i += 1
            return node
        self.fail(f"unexpected {text!r} at column {col}")
        raise AssertionError("unreachable")


def parse(source: str, field: str = "formula") -> Formula:
    """Parse and check a formula; Invalid (naming the column) when it is not one."""
    text = source.strip()
    if len(text) > 2000:
        raise Invalid.on(field, "is longer than 2000 characters")
    parser = _Parser(text, field)
    tree = parser.parse()
    return Formula(text, tree, frozenset(parser.refs))


def _eval(tree: Node, values: dict[str, Decimal | None]) -> Decimal | None:
    """Post-order over an explicit stack: a long chain such as a + b + ... + z is a tree as deep as it
    is long, deeper than Python's recursion limit allows."""
    todo: list[tuple[Node, bool]] = [(tree, False)]
    done: list[Decimal | None] = []
    while todo:
        node, ready = todo.pop()
        kind = node[0]
        if kind == "num":
            done.append(node[1])
        elif kind == "ref":
            done.append(values.get(node[1]))
        elif not ready:
            todo.append((node, True))
            todo.extend((child, False) for child in reversed(node[2:] if kind == "bin" else node[1:]))
        elif kind == "neg":
            v = done.pop()
            done.append(None if v is None else -v)
        else:
            right = done.pop()
            done.append(_apply(node[1], done.pop(), right))
    return done[0]


def _apply(op: str, left: Decimal | None, right: Decimal | None) -> Decimal | None:
    if left is None or right is None:
        return None
    if op == "+":
        result = left + right
    elif op == "-":
        result = left - right
    elif op == "*":
        result = left * right
    elif right == 0:
        return None
    else:
        result = left / right
    return None if abs(result) >= MAX_RESULT else result
