"""TPE search (train.search: optuna | hyperopt): one seeded searcher per family, families in
turn, state that survives save and restore. Driven by hand, as Tune would, without Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ray import tune

from pipelines.stages.search import PerFamilySearcher, startup_trials, tpe_searcher

SPACES: dict[str, dict[str, Any]] = {
    "xgboost": {"eta": tune.loguniform(0.01, 0.3), "max_depth": tune.randint(3, 8),
                "min_child_weight": tune.choice([1, 5])},
    "linear": {"C": tune.loguniform(0.01, 10.0)},
    "fixed": {},
}


def _score(config: dict[str, Any]) -> float:
    """A made-up validation loss: best near eta 0.1, C 1."""
    params = config[config["family"]]
    return abs(params.get("eta", 0.1) - 0.1) + abs(params.get("C", 1.0) - 1.0) / 10


def _drive(alg: Any, trials: int, start: int = 0) -> list[dict[str, Any]]:
    """Suggest, report and complete ``trials`` trials one at a time (max_concurrent 1)."""
    configs = []
    for i in range(start, start + trials):
        config = alg.suggest(f"t{i}")
        alg.on_trial_result(f"t{i}", {"logloss": _score(config) + 0.1, "training_iteration": 1})
        alg.on_trial_complete(f"t{i}", {"logloss": _score(config)})
        configs.append(config)
    return configs


def _searcher(search: str, seed: int = 0) -> Any:
    return tpe_searcher(search, SPACES, metric="logloss", mode="min", seed=seed,
                        num_samples=12, max_concurrent=1)


@pytest.mark.parametrize("search", ["optuna", "hyperopt"])
def test_the_same_seed_suggests_the_same_trials(search: str) -> None:
    first, again = _drive(_searcher(search), 30), _drive(_searcher(search), 30)
    assert first == again
    assert _drive(_searcher(search, seed=1), 30) != first


@pytest.mark.parametrize("search", ["optuna", "hyperopt"])
def test_families_take_turns_and_each_searches_its_own_space(search: str) -> None:
    configs = _drive(_searcher(search), 9)
    assert [c["family"] for c in configs] == ["xgboost", "linear", "fixed"] * 3
    for c in configs:
        assert set(c) == {"family", c["family"]}  # no other family's parameters
        assert set(c[c["family"]]) == set(SPACES[c["family"]])
    assert all(3 <= c["xgboost"]["max_depth"] < 8 for c in configs if c["family"] == "xgboost")


def test_each_family_s_searcher_sees_only_its_own_trials() -> None:
    seen: dict[str, list[tuple[str, Any]]] = {}

    class Fake:
        def __init__(self, name: str) -> None:
            self.name = name

        def suggest(self, trial_id: str) -> dict[str, Any]:
            return {"x": 1}

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            seen.setdefault(self.name, []).append(("result", trial_id))

        def on_trial_complete(self, trial_id: str, result: Any = None,
                              error: bool = False) -> None:
            seen.setdefault(self.name, []).append(("complete", trial_id))

    alg = PerFamilySearcher({"a": Fake("a"), "b": Fake("b")}, "logloss", "min")
    _drive(alg, 4)
    assert seen == {"a": [("result", "t0"), ("complete", "t0"), ("result", "t2"),
                          ("complete", "t2")],
                    "b": [("result", "t1"), ("complete", "t1"), ("result", "t3"),
                          ("complete", "t3")]}


@pytest.mark.parametrize("search", ["optuna", "hyperopt"])
def test_a_restored_searcher_continues_the_same_search(search: str, tmp_path: Path) -> None:
    """What Tuner.restore does with the experiment's searcher checkpoint: the search goes on
    as if never interrupted (TPE keeps the finished trials' results and its random state)."""
    uninterrupted = _drive(_searcher(search), 24)
    interrupted = _searcher(search)
    before = _drive(interrupted, 14)
    interrupted.save(str(tmp_path / "searcher.pkl"))
    restored = _searcher(search, seed=99)  # the state, seed included, comes from the file
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert before + _drive(restored, 10, start=14) == uninterrupted


def test_tpe_models_the_results_after_the_random_start() -> None:
    """After the startup trials TPE suggests near the good ones: the last xgboost trials'
    eta lies closer to the best value (0.1) than the random start's did."""
    configs = _drive(_searcher("optuna"), 90)
    etas = [c["xgboost"]["eta"] for c in configs if c["family"] == "xgboost"]
    start = startup_trials(12)
    random_part = sorted(abs(e - 0.1) for e in etas[:start])
    late = sorted(abs(e - 0.1) for e in etas[-10:])
    assert late[len(late) // 2] < random_part[len(random_part) // 2]


def test_startup_trials_are_a_third_of_the_budget_within_bounds() -> None:
    assert [startup_trials(n) for n in (1, 4, 12, 30, 100)] == [2, 2, 4, 10, 10]


def test_a_search_whose_library_is_missing_fails_before_the_sweep_naming_the_extra() -> None:
    from pipelines.stages.train import MissingLibraryError, _check_installed

    _check_installed({}, "optuna")  # installed with the test extra
    with pytest.raises(MissingLibraryError, match=r"train.search: no_such_tpe .*raypipe-tabular\[search\]"):
        _check_installed({}, "no_such_tpe")
