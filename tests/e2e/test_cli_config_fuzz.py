"""Generated bad config files through the real CLI: exit code 2, the field named, no traceback,
and no Ray started (``run`` refuses the file as quickly as ``validate``)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import yaml

from tests.config_mutations import KINDS, mutate
from tests.e2e.cli_helpers import raypipe

pytestmark = pytest.mark.e2e

CASES = [(kind, seed) for kind in KINDS for seed in (1, 2)]


def test_generated_bad_config_files_get_a_clear_error_through_the_cli(tmp_path: Path) -> None:
    refused = 0
    for i, (kind, seed) in enumerate(CASES):
        _, data, field = mutate(random.Random(seed), kind=kind)
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(yaml.safe_dump(data))
        for command in ("validate", "run") if i % 2 == 0 else ("validate",):
            t0 = time.perf_counter()
            r = raypipe(command, str(path))
            out = r.stderr + r.stdout
            assert r.returncode == 2, (kind, field, command, out[-2000:])
            assert field in out, (kind, field, out[-2000:])
            assert "Traceback" not in out
            assert time.perf_counter() - t0 < 60  # refused before Ray or training start
            refused += 1
    print(f"\nconfig fuzz (CLI): {refused} commands on {len(CASES)} generated bad files, "
          f"{refused} refused with exit 2 naming the field")
