"""Loading a model's native flavour where raypipe cannot be imported (unit and integration)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

__all__ = ["predict_without_raypipe"]

# Run with ``python -I`` from a folder outside the repository: no PYTHONPATH, no cwd on sys.path.
# The test environment installs raypipe (editable), so the script first makes it unimportable,
# as it is where a user takes the model: a finder ahead of all others refuses ``pipelines``.
PLAIN_PROCESS = textwrap.dedent("""
    import importlib.abc, json, sys

    class NoRaypipe(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "pipelines" or name.startswith("pipelines."):
                raise ImportError("raypipe is not installed here")
            return None

    sys.meta_path.insert(0, NoRaypipe())
    import numpy as np, pandas as pd
    try:
        import pipelines
    except ImportError:
        pass
    else:
        sys.exit("pipelines is importable: " + pipelines.__file__)
    import mlflow, mlflow.artifacts
    out = {}
    for case in json.load(open("cases.json")):
        X = np.load(case["features"])
        local = mlflow.artifacts.download_artifacts(case["uri"])
        spec = json.load(open(local + "/feature_pipeline.json"))
        frame = pd.DataFrame(X, columns=spec["feature_names"])
        flavour = case["flavour"]
        if flavour == "xgboost":
            import xgboost
            booster = mlflow.xgboost.load_model(case["uri"])
            native = booster.predict(xgboost.DMatrix(X, feature_names=spec["feature_names"]))
            via_pyfunc = mlflow.pyfunc.load_model(case["uri"]).predict(frame)
        elif flavour == "sklearn":
            est = mlflow.sklearn.load_model(case["uri"])
            classifier = hasattr(est, "predict_proba")
            native = est.predict_proba(frame) if classifier else est.predict(frame)
            via_pyfunc = mlflow.pyfunc.load_model(case["uri"]).predict(frame)
        else:
            import torch
            module = mlflow.pytorch.load_model(case["uri"])
            native = module(torch.from_numpy(X)).detach().numpy()
            via_pyfunc = mlflow.pyfunc.load_model(case["uri"]).predict(X)
        out[case["name"]] = [np.asarray(native, dtype=np.float64).tolist(),
                             np.asarray(via_pyfunc, dtype=np.float64).tolist()]
    json.dump(out, open("out.json", "w"))
    print("pipelines imported:", "pipelines" in sys.modules)
""")


def predict_without_raypipe(cases: list[dict[str, str]], folder: Path,
                            tracking_uri: str) -> dict[str, Any]:
    """``{name: [native predictions, its pyfunc's predictions]}`` of each case (``name``,
    ``uri`` of a native model, ``flavour``, ``features``: an ``.npy`` of featurised rows),
    computed by ``python -I`` in ``folder`` with ``pipelines`` unimportable.
    """
    (folder / "cases.json").write_text(json.dumps(cases))
    (folder / "plain.py").write_text(PLAIN_PROCESS)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    done = subprocess.run([sys.executable, "-I", "plain.py"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pipelines imported: False" in done.stdout
    out: dict[str, Any] = json.loads((folder / "out.json").read_text())
    return out
