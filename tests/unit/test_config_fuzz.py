"""Property test: every generated bad config (unknown keys, wrong types, missing required fields,
bad search spaces) is refused with a ConfigError that names the field, never another exception."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.config import ConfigError, parse_config
from tests.config_mutations import KINDS, demo_data, mutate

BASE = demo_data()
SEEN: Counter[str] = Counter()


def test_the_unmutated_demo_config_is_valid() -> None:
    parse_config(BASE)  # else every mutation below would fail for the wrong reason


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.sampled_from(KINDS), st.randoms(use_true_random=False))
def test_every_bad_config_gets_an_error_naming_its_field(kind: str, rng: random.Random) -> None:
    kind, data, field = mutate(rng, BASE, kind)
    try:
        parse_config(data)
    except ConfigError as err:
        message = str(err)
    else:
        raise AssertionError(f"{kind} at {field} was accepted")
    SEEN[kind] += 1
    assert field in message, (kind, field, message)
    assert "Traceback" not in message


def test_every_kind_of_defect_was_generated() -> None:
    print(f"\nconfig fuzz: {sum(SEEN.values())} bad configs refused naming the field: "
          f"{dict(sorted(SEEN.items()))}")
    assert set(SEEN) == set(KINDS)
    assert sum(SEEN.values()) >= 400
