"""A model logged before ``pipelines/`` was split into packages still loads and predicts the same.

``tests/fixtures/model_v0`` was logged by the pipeline at commit 61a6dd7 (see
``tests/fixtures/build_model_v0.py``). Its ``python_model.pkl`` pickles the wrapper by reference,
as ``pipelines.pyfunc_model.RaypipeModel``; the spec and the booster are JSON and UBJSON
artifacts, which name no Python class. The model also carries its own copy of the ``pipelines``
package of that day (``code/pipelines``), which MLflow puts first on ``sys.path`` when loading.

Which ``pipelines`` unpickles the wrapper depends on the process:

- already imported (a Serve replica, a batch actor, the monitor, this test process): Python finds
  ``pipelines.pyfunc_model`` through the imported package's ``__path__``, so the *current* code
  unpickles and runs the old model — through the alias module ``pipelines/pyfunc_model.py``.
  MLflow evicts cached modules only by bare file stem (``model``, ``features``), never
  ``pipelines.*``. The first two tests prove this path, predictions included.
- not yet imported (``mlflow models serve``, a fresh Python): the bundled copy shadows any
  installed raypipe and the old model runs its own old code. The last test records that.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cloudpickle
import pandas as pd
import pytest

import pipelines
from pipelines.model.pyfunc import RaypipeModel

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "model_v0"
BUNDLED = FIXTURE / "code"
CURRENT = Path(pipelines.__file__).resolve().parent


def _rows_and_expected() -> tuple[pd.DataFrame, pd.DataFrame]:
    saved = pd.read_parquet(FIXTURE / "expected.parquet")
    expected_cols = [c for c in saved.columns if c.startswith("expected_")]
    expected = saved[expected_cols].rename(columns=lambda c: c.removeprefix("expected_"))
    return saved.drop(columns=expected_cols), expected


def _loaded_from_bundle() -> list[str]:
    return sorted(name for name, mod in list(sys.modules.items())
                  if name.split(".")[0] == "pipelines"
                  and BUNDLED in Path(getattr(mod, "__file__", None) or "/").resolve().parents)


def test_the_pickle_names_the_old_wrapper_path() -> None:
    # What the alias module exists for: the class reference inside python_model.pkl.
    raw = (FIXTURE / "python_model.pkl").read_bytes()
    assert b"pipelines.pyfunc_model" in raw and b"RaypipeModel" in raw


def test_an_old_model_predicts_the_same_through_the_current_package(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.setattr(sys, "path", list(sys.path))  # MLflow prepends the model's code/ to it
    rows, expected = _rows_and_expected()

    model = mlflow.pyfunc.load_model(str(FIXTURE))

    wrapper = model.unwrap_python_model()
    assert type(wrapper) is RaypipeModel  # the current class, found through pipelines.pyfunc_model
    assert CURRENT in Path(sys.modules[type(wrapper).__module__].__file__ or "").resolve().parents
    assert _loaded_from_bundle() == []
    pd.testing.assert_frame_equal(model.predict(rows), expected, check_exact=True)


def test_the_pickle_alone_unpickles_to_the_current_wrapper() -> None:
    # Without MLflow's loader (no code path on sys.path at all): the alias module is what
    # resolves the reference, and the wrapper predicts with the current package's code.
    rows, expected = _rows_and_expected()
    wrapper = cloudpickle.loads((FIXTURE / "python_model.pkl").read_bytes())
    assert type(wrapper) is RaypipeModel
    artifacts = {"model_spec": str(FIXTURE / "artifacts" / "model_spec.json"),
                 "model_dir": str(FIXTURE / "artifacts" / "model")}
    wrapper.load_context(SimpleNamespace(artifacts=artifacts))
    pd.testing.assert_frame_equal(wrapper.predict(None, rows), expected, check_exact=True)


def test_a_fresh_process_runs_the_old_model_on_its_bundled_code(tmp_path: Path) -> None:
    # Documents MLflow's behaviour rather than ours: with no raypipe imported yet, the model's
    # own code/ comes first on sys.path and unpickles the wrapper; predictions are the same.
    script = tmp_path / "load.py"
    script.write_text(
        "import sys, mlflow, pandas as pd\n"
        f"saved = pd.read_parquet({str(FIXTURE / 'expected.parquet')!r})\n"
        "rows = saved[[c for c in saved.columns if not c.startswith('expected_')]]\n"
        f"out = mlflow.pyfunc.load_model({str(FIXTURE)!r}).predict(rows)\n"
        "print(sys.modules['pipelines'].__file__)\n"
        "print(out.equals(saved[['expected_prediction', 'expected_probability']]"
        ".rename(columns=lambda c: c.removeprefix('expected_'))))\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         check=True, cwd=tmp_path, timeout=300)
    package_file, same = out.stdout.strip().splitlines()[-2:]
    assert BUNDLED in Path(package_file).resolve().parents
    assert same == "True"
