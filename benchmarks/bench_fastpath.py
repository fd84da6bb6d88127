"""The online fast path vs the pandas path, side by side in one run, on the same model.

    python benchmarks/bench_fastpath.py [--repeats 200] [--rows 1 10 100]

`predict_columns` (pipelines/model/engine.py) featurises request columns with the compiled
pipeline (numpy, no DataFrame) and falls back to the pandas path only where the compiled one
does not accept the input; the pandas path is `predict_frame(columns_to_frame(...))`, what every
request took before. Both score the same XGBoost model, built as the unit tests build theirs
(tests/unit/model/helpers.py: a fitted feature pipeline with numeric, categorical, datetime
and boolean columns, 15 rounds). Reports best and median wall time per call over --repeats
calls after a warm-up, and the ratio pandas / fast. Moved here from a timed unit test: a
ratio is a measurement, not a pass/fail property of the code.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo: tests' helpers


def _times(fn: Callable[[], Any], repeats: int) -> list[float]:
    for _ in range(10):  # warm-up: first calls build caches
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 10, 100])
    args = parser.parse_args(argv)

    from pipelines.model.engine import columns_to_frame, predict_columns
    from pipelines.model.spec import predict_frame
    from tests.unit.model.helpers import make_model, random_columns

    model = make_model()
    print(f"machine: {platform.machine()}, {platform.python_version()}, "
          f"{__import__('os').cpu_count()} CPUs; best / median of {args.repeats} calls")
    print("| rows | fast path ms | pandas path ms | ratio (best) |")
    print("| ---: | ---: | ---: | ---: |")
    for n in args.rows:
        cols = random_columns(n, 4)
        assert model.compiled is not None and model.compiled.accepts(cols), "fast path refused"
        fast = _times(lambda c=cols, k=n: predict_columns(model, c, k), args.repeats)
        slow = _times(lambda c=cols: predict_frame(model.spec, model.predictor,
                                                   columns_to_frame(c, model.spec)), args.repeats)
        print(f"| {n} | {min(fast) * 1e3:.2f} / {statistics.median(fast) * 1e3:.2f} | "
              f"{min(slow) * 1e3:.2f} / {statistics.median(slow) * 1e3:.2f} | "
              f"{min(slow) / min(fast):.1f}x |")


if __name__ == "__main__":
    main()
