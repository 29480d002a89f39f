"""A parser and evaluator for the OData ``$filter`` subset Exact clients send.

Grammar (operators and keywords are case-insensitive)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := operand (("eq"|"ne"|"gt"|"ge"|"lt"|"le") operand)?
    operand    := "(" expr ")" | literal | function "(" expr ("," expr)* ")" | Field
    literal    := guid'...' | datetime'...' | 'text' ('' escapes ') | 12 | -1.5 | 1.5M
                | true | false | null
    function   := trim | tolower | toupper | substringof | startswith | endswith

A parse error or an unknown field raises ``FilterError`` (the API answers 400).

Node count: each comparison, ``and``/``or``/``not``, function call, field and literal is one
node of the expression tree, so ``InvoiceID eq guid'a' or InvoiceID eq guid'b'`` has 7 (three
per comparison, one per ``or``). ``parse_filter(..., node_limit=N)`` refuses a larger tree with
``NodeLimitExceeded``, the way Microsoft's OData stacks refuse one past their ``MaxNodeCount``
(100 by default in ASP.NET Web API OData). Whether Exact enforces such a limit, and at what
size, is not documented anywhere we could read; the simulator makes it configurable so that the
connector is tested against one.
"""

from __future__ import annotations

import functools
import operator
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["FilterError", "NodeLimitExceeded", "Predicate", "parse_filter"]

#: Evaluates a parsed filter against one record.
Predicate = Callable[[Mapping[str, Any]], Any]


class FilterError(ValueError):
    """The ``$filter`` text is not valid for this entity set."""


class NodeLimitExceeded(FilterError):
    """The ``$filter`` expression has more nodes than the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            "The query specified in the URI is not valid. "
            f"The node count limit of '{limit}' has been exceeded."
        )
        self.limit = limit


@dataclass(frozen=True)
class _Token:
    kind: str  # "(" ")" "," "literal" "name"
    value: Any


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<punct>[(),])
      | (?P<guid>guid'(?P<guid_v>[^']*)')
      | (?P<dt>datetime(?:offset)?'(?P<dt_v>[^']*)')
      | (?P<str>'(?P<str_v>(?:[^']|'')*)')
      | (?P<num>-?\d+(?:\.\d+)?)[mMdDlLfF]?
      | (?P<name>[A-Za-z_][A-Za-z0-9_/]*)
    )""",
    re.VERBOSE,
)

_COMPARE: Mapping[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}

_FUNCTIONS: Mapping[str, tuple[int, Callable[..., Any]]] = {
    "trim": (1, lambda s: s.strip() if isinstance(s, str) else s),
    "tolower": (1, lambda s: s.lower() if isinstance(s, str) else s),
    "toupper": (1, lambda s: s.upper() if isinstance(s, str) else s),
    "substringof": (2, lambda needle, hay: isinstance(hay, str) and str(needle) in hay),
    "startswith": (2, lambda hay, prefix: isinstance(hay, str) and hay.startswith(str(prefix))),
    "endswith": (2, lambda hay, suffix: isinstance(hay, str) and hay.endswith(str(suffix))),
}


def _datetime(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FilterError(f"invalid datetime literal '{text}'") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FilterError(f"syntax error in $filter at position {position}")
        position = match.end()
        if match["punct"]:
            tokens.append(_Token(match["punct"], match["punct"]))
        elif match["guid"]:
            try:
                tokens.append(_Token("literal", str(uuid.UUID(match["guid_v"]))))
            except ValueError as exc:
                raise FilterError(f"invalid guid literal '{match['guid_v']}'") from exc
        elif match["dt"]:
            tokens.append(_Token("literal", _datetime(match["dt_v"])))
        elif match["str"] is not None:
            tokens.append(_Token("literal", match["str_v"].replace("''", "'")))
        elif match["num"]:
            number = match["num"]
            tokens.append(_Token("literal", float(number) if "." in number else int(number)))
        else:
            tokens.append(_Token("name", match["name"]))
    return tokens


@functools.lru_cache(maxsize=1 << 16)
def _canonical(text: str) -> str:
    """A guid's canonical form, or the text itself when it is not one. Cached: a 60-key ``or``
    filter over thousands of rows compares the same few strings again and again."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


def _compare(op: Callable[[Any, Any], bool], left: Any, right: Any) -> bool:
    if left is None or right is None:
        # Only eq/ne are meaningful against null, as in OData.
        return op in (operator.eq, operator.ne) and op(left, right)
    if isinstance(left, str) and isinstance(right, str):
        # guids compare without regard to case or braces
        left, right = _canonical(left), _canonical(right)
    try:
        return bool(op(left, right))
    except TypeError as exc:
        raise FilterError(f"cannot compare {left!r} with {right!r}") from exc


class _Parser:
    def __init__(self, tokens: list[_Token], fields: frozenset[str]) -> None:
        self._tokens = tokens
        self._at = 0
        self._fields = fields
        #: nodes of the expression tree built so far
        self.nodes = 0

    def parse(self) -> Predicate:
        expr = self._or()
        if self._at != len(self._tokens):
            raise FilterError(f"unexpected '{self._tokens[self._at].value}' in $filter")
        return expr

    def _peek_word(self) -> str | None:
        if self._at < len(self._tokens) and self._tokens[self._at].kind == "name":
            return str(self._tokens[self._at].value).lower()
        return None

    def _next(self) -> _Token:
        if self._at >= len(self._tokens):
            raise FilterError("$filter ends too early")
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _expect(self, kind: str) -> None:
        if self._next().kind != kind:
            raise FilterError(f"expected '{kind}' in $filter")

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._peek_word() == "or":
            self._at += 1
            parts.append(self._and())
            self.nodes += 1
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def _and(self) -> Predicate:
        parts = [self._not()]
        while self._peek_word() == "and":
            self._at += 1
            parts.append(self._not())
            self.nodes += 1
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def _not(self) -> Predicate:
        if self._peek_word() == "not":
            self._at += 1
            self.nodes += 1
            inner = self._not()
            return lambda row: not inner(row)
        return self._comparison()

    def _comparison(self) -> Predicate:
        left = self._operand()
        word = self._peek_word()
        if word is None or word not in _COMPARE:
            return left
        self._at += 1
        self.nodes += 1
        op, right = _COMPARE[word], self._operand()
        return lambda row: _compare(op, left(row), right(row))

    def _operand(self) -> Predicate:
        token = self._next()
        if token.kind == "(":
            inner = self._or()
            self._expect(")")
            return inner
        if token.kind == "literal":
            self.nodes += 1
            value = token.value
            return lambda _row: value
        if token.kind != "name":
            raise FilterError(f"unexpected '{token.value}' in $filter")
        word = str(token.value)
        self.nodes += 1
        constants = {"true": True, "false": False, "null": None}
        if word.lower() in constants:
            constant = constants[word.lower()]
            return lambda _row: constant
        if (
            word.lower() in _FUNCTIONS
            and self._at < len(self._tokens)
            and self._tokens[self._at].kind == "("
        ):
            return self._call(word.lower())
        if word not in self._fields:
            raise FilterError(f"No property '{word}' exists in type")
        return lambda row: row.get(word)

    def _call(self, name: str) -> Predicate:
        arity, function = _FUNCTIONS[name]
        self._expect("(")
        args = [self._or()]
        while self._at < len(self._tokens) and self._tokens[self._at].kind == ",":
            self._at += 1
            args.append(self._or())
        self._expect(")")
        if len(args) != arity:
            raise FilterError(f"{name} takes {arity} argument(s)")
        return lambda row: function(*(arg(row) for arg in args))


def parse_filter(text: str, fields: frozenset[str], *, node_limit: int | None = None) -> Predicate:
    """Parse ``text`` into a predicate over records with the given ``fields``; raises
    ``NodeLimitExceeded`` when its tree has more than ``node_limit`` nodes."""
    tokens = _tokens(text)
    if not tokens:
        raise FilterError("empty $filter")
    parser = _Parser(tokens, fields)
    predicate = parser.parse()
    if node_limit is not None and parser.nodes > node_limit:
        raise NodeLimitExceeded(node_limit)
    return predicate
