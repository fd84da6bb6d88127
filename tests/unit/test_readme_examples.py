"""The README's "Extending raypipe" examples are, line for line, the code the tests run: an
example cannot drift from what works."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("heading", "helper", "marker"), [
    ("### A new source kind", "tests/extending_helpers.py", "a new source kind"),
    ("### A new model family", "tests/toy_family.py", "a new model family"),
])
def test_the_readme_example_is_the_tested_helper(heading: str, helper: str, marker: str) -> None:
    section = (ROOT / "README.md").read_text().split(heading, 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.S)
    code = re.search(rf"# --- README example: {marker} ---\n(.*?)# --- end",
                     (ROOT / helper).read_text(), re.S)
    assert example and code
    assert example.group(1) == code.group(1)
