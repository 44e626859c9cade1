"""Derived-metric formulas: + - * / parentheses, decimal constants and metric keys.

A small recursive-descent parser (never `eval`, and more precise than Python's
own parser about *where* a formula is wrong: every error names its column).
Evaluation is exact decimal arithmetic; a division by zero or a missing
operand gives None, never an error.

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
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind), m.start(kind) + 1))
            pos = m.end()
        self.i = 0
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

    def unary(self) -> Node:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in "+-":
            self.i += 1
            inner = self.unary()
            return ("neg", inner) if tok[1] == "-" else inner
        return self.primary()

    def primary(self) -> Node:
        tok = self.peek()
        if tok is None:
            self.fail(f"a metric key, number or '(' expected at column {self.end_column()} (end of formula)")
        kind, text, col = tok  # type: ignore[misc]
        self.i += 1
        if kind == "num":
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
            node = self.expr()
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


def _eval(node: Node, values: dict[str, Decimal | None]) -> Decimal | None:
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "ref":
        return values.get(node[1])
    if kind == "neg":
        v = _eval(node[1], values)
        return None if v is None else -v
    _, op, left_node, right_node = node
    left = _eval(left_node, values)
    right = _eval(right_node, values)
    if left is None or right is None:
        return None
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        return None
    return left / right
