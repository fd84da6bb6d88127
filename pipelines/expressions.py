"""A small, safe expression language for derived feature columns.

An expression is parsed with :mod:`ast` and checked against a whitelist of node types before
anything runs; it is then evaluated by walking the tree with NumPy on float arrays. Nothing is
ever handed to ``eval``/``exec``, so an expression can read columns and call the listed
functions, and nothing else (no attributes, subscripts, imports, lambdas or other calls).

Size is bounded before anything recurses: CPython's parser, :func:`ast.unparse` and the
evaluator here all recurse once per nesting level, and a hostile expression (a 3,000-term sum,
100k unary minuses) would otherwise end in ``RecursionError`` or ``MemoryError`` instead of an
error naming the feature. The length is checked first (constant time), then the parsed tree's
depth and size in one iterative pass, so refusing costs time linear in the text at most.

Imported by the MLflow model at load time: NumPy only.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pipelines.errors import RaypipeError

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_EXPRESSION_CHARS",
    "MAX_NODES",
    "ExpressionError",
    "check_expression",
    "check_syntax",
    "evaluate",
    "referenced_columns",
]

MAX_EXPRESSION_CHARS = 1_000
"""Longest expression accepted, checked before parsing (the parser recurses on nesting)."""
MAX_DEPTH = 64
"""Deepest nesting of terms and operations (a left-to-right sum of n terms nests n deep); the
evaluator recurses once per level, far below Python's recursion limit at this depth."""
MAX_NODES = 256
"""Most terms and operations (names, numbers, operators, calls) in one expression."""
_SHOWN_CHARS = 80


class ExpressionError(RaypipeError, ValueError):
    """An expression that is not allowed or cannot be evaluated; the message names the feature."""


def _clip(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, lo), hi)


def _where(cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(cond != 0, a, b)


FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
    # name: (implementation, number of arguments)
    "abs": (np.abs, 1),
    "log": (np.log, 1),
    "log1p": (np.log1p, 1),
    "exp": (np.exp, 1),
    "sqrt": (np.sqrt, 1),
    "floor": (np.floor, 1),
    "ceil": (np.ceil, 1),
    "round": (np.round, 1),
    "isnan": (lambda x: np.isnan(x).astype(np.float64), 1),
    "min": (np.minimum, 2),
    "max": (np.maximum, 2),
    "clip": (_clip, 3),
    "where": (_where, 3),
}

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
    ast.Div: np.divide, ast.FloorDiv: np.floor_divide, ast.Mod: np.mod, ast.Pow: np.power,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
    ast.Eq: np.equal, ast.NotEq: np.not_equal,
}
_ALLOWED: tuple[type, ...] = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Call,
    ast.Name, ast.Load, ast.Constant, ast.USub, ast.UAdd, ast.Not, ast.And, ast.Or,
    *_BINARY, *_COMPARE,
)


def _shown(expr: str) -> str:
    """``expr`` quoted for an error message, cut short: messages stay one readable line."""
    if len(expr) <= _SHOWN_CHARS:
        return repr(expr)
    return f"{expr[:_SHOWN_CHARS]!r}... ({len(expr):,} characters)"


def _check_size(name: str, tree: ast.Expression) -> None:
    """Refuse trees deeper than MAX_DEPTH or larger than MAX_NODES, without recursing."""
    count = 0
    todo: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise ExpressionError(f"derived feature {name!r}: nested more than {MAX_DEPTH} "
                                  "levels deep; split it into several derived features")
        count += 1
        if count > MAX_NODES:
            raise ExpressionError(f"derived feature {name!r}: more than {MAX_NODES} terms and "
                                  "operations; split it into several derived features")
        todo.extend((child, depth + 1) for child in ast.iter_child_nodes(node)
                    if isinstance(child, ast.expr))


def _check_constant(name: str, expr: str, node: ast.Constant) -> None:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExpressionError(
            f"derived feature {name!r}: only numbers may be constants, got {repr(value)[:_SHOWN_CHARS]}"
        )
    try:
        finite = math.isfinite(float(value))
    except OverflowError:  # an integer literal beyond the float range (e.g. 400 digits)
        finite = False
    if not finite:
        text = ast.get_source_segment(expr, node) or str(value)
        raise ExpressionError(f"derived feature {name!r}: the number {_shown(text)} is beyond "
                              "the float64 range (about 1.8e308)")


def _parse(name: str, expr: str) -> ast.Expression:
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"derived feature {name!r}: the expression has {len(expr):,} "
                              f"characters, more than {MAX_EXPRESSION_CHARS:,}")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as err:
        raise ExpressionError(
            f"derived feature {name!r}: cannot parse {_shown(expr)}: {err.msg}") from None
    except (RecursionError, MemoryError, OverflowError, ValueError) as err:
        # The length bound keeps CPython's parser clear of these; kept for other interpreters.
        raise ExpressionError(f"derived feature {name!r}: cannot parse {_shown(expr)}: "
                              f"{type(err).__name__}") from None
    _check_size(name, tree)
    nodes = list(ast.walk(tree))
    for node in nodes:  # every node type first, so the message names the real culprit
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(
                f"derived feature {name!r}: {type(node).__name__} is not allowed in {_shown(expr)}"
            )
    for node in nodes:
        if isinstance(node, ast.Constant):
            _check_constant(name, expr, node)
        if isinstance(node, ast.Call):
            fname = node.func.id if isinstance(node.func, ast.Name) else None
            if fname not in FUNCTIONS:
                raise ExpressionError(f"derived feature {name!r}: unknown function "
                                      f"{_shown(ast.unparse(node.func))}; allowed: "
                                      f"{', '.join(sorted(FUNCTIONS))}")
            if node.keywords or len(node.args) != FUNCTIONS[fname][1]:
                raise ExpressionError(f"derived feature {name!r}: {fname}() takes "
                                      f"{FUNCTIONS[fname][1]} positional argument(s)")
    return tree


def check_syntax(name: str, expr: str) -> None:
    """Raise :class:`ExpressionError` unless ``expr`` is allowed, whatever columns it reads.

    What a config can be checked for when it loads, before any data is seen: the size limits,
    the syntax, the constructs, the functions and their argument counts.
    """
    _parse(name, expr)


def referenced_columns(name: str, expr: str) -> list[str]:
    """The column names an expression reads, in first-use order (function names excluded)."""
    tree = _parse(name, expr)
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    seen: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in calls:
            seen.setdefault(node.id, None)
    return list(seen)


def check_expression(name: str, expr: str, columns: set[str]) -> None:
    """Raise :class:`ExpressionError` unless ``expr`` is allowed and reads only ``columns``."""
    unknown = [c for c in referenced_columns(name, expr) if c not in columns]
    if unknown:
        raise ExpressionError(
            f"derived feature {name!r}: unknown column(s) {', '.join(unknown)} in {_shown(expr)}; "
            "expressions read numeric or boolean columns and earlier derived features"
        )


def evaluate(name: str, expr: str, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Evaluate ``expr`` over float columns: a float64 array of ``n`` values.

    Division by zero, overflow and invalid operations give a missing value (NaN), never inf:
    the models treat NaN as missing but refuse infinite inputs.
    """
    tree = _parse(name, expr)
    with np.errstate(all="ignore"):
        out = np.asarray(_eval(tree.body, columns), dtype=np.float64)
    out = np.broadcast_to(out, (n,)).copy() if out.shape != (n,) else out.copy()
    out[~np.isfinite(out)] = np.nan
    return out


def _eval(node: ast.AST, cols: Mapping[str, np.ndarray]) -> Any:
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, int | float)  # _parse refused any other constant
        return float(node.value)
    if isinstance(node, ast.Name):
        return cols[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, cols), _eval(node.right, cols))
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, cols)
        if isinstance(node.op, ast.Not):
            return (np.asarray(v) == 0).astype(np.float64)
        return np.negative(v) if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BoolOp):
        values = [np.asarray(_eval(v, cols)) != 0 for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        result = values[0]
        for v in values[1:]:
            result = combine(result, v)
        return result.astype(np.float64)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, cols)
        result = None
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, cols)
            part = _COMPARE[type(op)](left, right)
            result = part if result is None else np.logical_and(result, part)
            left = right
        return np.asarray(result).astype(np.float64)
    if isinstance(node, ast.IfExp):
        return np.where(np.asarray(_eval(node.test, cols)) != 0,
                        _eval(node.body, cols), _eval(node.orelse, cols))
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        fn = FUNCTIONS[node.func.id][0]
        return fn(*(_eval(a, cols) for a in node.args))
    raise AssertionError(f"unchecked node {type(node).__name__}")  # _parse refused it already
