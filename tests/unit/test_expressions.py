"""The safe expression language of derived features: what it computes and what it refuses."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.expressions import ExpressionError, check_expression, evaluate, referenced_columns

COLS = {"a": np.array([1.0, 2.0, 0.0, np.nan]), "b": np.array([4.0, 0.0, -1.0, 3.0])}


def run(expr: str) -> np.ndarray:
    return evaluate("f", expr, COLS, 4)


def test_arithmetic_follows_numpy() -> None:
    np.testing.assert_array_equal(run("a * 2 + b - 1"), COLS["a"] * 2 + COLS["b"] - 1)
    np.testing.assert_array_equal(run("-a ** 2"), -(COLS["a"] ** 2))
    np.testing.assert_array_equal(run("b % 3"), np.mod(COLS["b"], 3))


def test_division_by_zero_and_overflow_give_missing_not_inf() -> None:
    out = run("a / b")
    np.testing.assert_array_equal(out[[0, 2]], [0.25, -0.0])
    assert np.isnan(out[1]) and np.isnan(out[3])
    assert np.isnan(run("exp(a * 1000)")[1])
    assert np.isnan(run("log(b)")[2])  # log of a negative number


def test_comparisons_and_logic_are_zero_one() -> None:
    np.testing.assert_array_equal(run("a > b"), [0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(run("0 <= a < 2"), [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(run("a > 0 and b > 0"), [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(run("not b"), [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(run("a if b > 0 else 100"), [1.0, 100.0, 100.0, np.nan])


def test_functions() -> None:
    np.testing.assert_array_equal(run("clip(b, 0, 3)"), [3.0, 0.0, 0.0, 3.0])
    np.testing.assert_array_equal(run("max(a, b)"), [4.0, 2.0, 0.0, np.nan])
    np.testing.assert_array_equal(run("isnan(a)"), [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(run("where(isnan(a), 0, a)"), [1.0, 2.0, 0.0, 0.0])
    np.testing.assert_allclose(run("log1p(abs(b))"), np.log1p(np.abs(COLS["b"])))


def test_a_constant_expression_fills_every_row() -> None:
    np.testing.assert_array_equal(run("2 * 3"), [6.0] * 4)


@pytest.mark.parametrize("expr, what", [
    ("__import__('os').system('true')", "Attribute"),
    ("__import__(a)", "unknown function"),
    ("a.real", "Attribute"),
    ("a[0]", "Subscript"),
    ("(lambda: 1)()", "Lambda"),
    ("'text'", "only numbers"),
    ("True + a", "only numbers"),
    ("[a, b]", "List"),
    ("a if b else open('x')", "unknown function"),
    ("sqrt(a, b)", "takes 1"),
    ("round(a, ndigits=2)", "keyword"),
    ("(x := 1)", "NamedExpr"),
    ("a +", "cannot parse"),
])
def test_forbidden_constructs_are_refused_naming_the_feature(expr: str, what: str) -> None:
    with pytest.raises(ExpressionError, match=f"'f'.*{what}"):
        evaluate("f", expr, COLS, 4)


def test_unknown_columns_are_named() -> None:
    with pytest.raises(ExpressionError, match=r"unknown column.*zz, yy"):
        check_expression("f", "a + zz * yy", {"a", "b"})
    check_expression("f", "log(a) + b", {"a", "b"})  # function names are not columns


def test_referenced_columns_in_first_use_order() -> None:
    assert referenced_columns("f", "max(b, a) + b * c") == ["b", "a", "c"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=20),
       st.sampled_from(["x / (x - 1)", "exp(x)", "log(x)", "x ** 3", "sqrt(x) * x"]))
def test_results_are_finite_or_missing(values: list[float], expr: str) -> None:
    out = evaluate("f", expr, {"x": np.asarray(values)}, len(values))
    assert out.shape == (len(values),)
    assert not np.isinf(out).any()


# --------------------------------------------------------------------------- hostile input


def _balanced_sum(n: int) -> str:
    """``n`` terms summed as a balanced tree: shallow, short enough, many nodes."""
    return "a" if n == 1 else f"({_balanced_sum(n // 2)}+{_balanced_sum(n - n // 2)})"


HOSTILE = {
    "3000-term sum": "+".join(["a"] * 3000),
    "100k unary minuses": "-" * 100_000 + "a",
    "400-digit literal": "9" * 400,
    "400-digit literal times a column": "9" * 400 + " * a",
    "1e999 literal": "a + 1e999",
    "900 unary minuses": "-" * 900 + "a",         # short enough, too deep to evaluate safely
    "400-term sum": "+".join(["a"] * 400),        # short enough, too deep
    "balanced 200-term sum": _balanced_sum(200),  # short enough, shallow, too many nodes
    "a megabyte": "a" * 1_000_000,
}


@pytest.mark.parametrize("expr", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_expressions_are_refused_fast_naming_the_feature(expr: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ExpressionError, match="derived feature 'f'") as info:
        check_expression("f", expr, {"a"})
    assert time.perf_counter() - t0 < 0.5
    assert len(str(info.value)) < 400  # the message does not echo a huge expression
    with pytest.raises(ExpressionError, match="derived feature 'f'"):
        evaluate("f", expr, COLS, 4)


def test_the_limits_leave_ordinary_expressions_alone() -> None:
    from pipelines.expressions import MAX_EXPRESSION_CHARS, check_syntax

    long_but_fine = " + ".join(f"log1p(abs(a * {i}))" for i in range(30))
    assert len(long_but_fine) < MAX_EXPRESSION_CHARS
    check_expression("f", long_but_fine, {"a"})
    check_expression("f", "-" * 50 + "a", {"a"})
    np.testing.assert_array_equal(run("1e300 * 0 + a"), COLS["a"])
    with pytest.raises(ExpressionError, match="characters"):
        check_syntax("f", "a" * (MAX_EXPRESSION_CHARS + 1))
