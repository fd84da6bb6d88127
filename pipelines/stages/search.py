"""How a sweep chooses its trials' hyperparameters: random sampling, or TPE through Optuna or
HyperOpt (``train.search``).

Imports Ray Tune: the sweep imports this module when it starts, not the stage package.

Random search is Tune's ``BasicVariantGenerator`` over a grid of families (see
``pipelines.stages.train``). For TPE the families are not a searched dimension: TPE would spend
the budget on whichever family looked best after its first trials, and one TPE model over all
families would rank a family's parameters by other families' scores, so the families would be
compared on unequal budgets and a mixed-up model. :class:`PerFamilySearcher` gives each family
its own TPE searcher, fed only that family's trials, and exactly ``num_samples`` trials, handed
out in turn (xgboost, mlp, xgboost, mlp, ...) as the grid does for random search.

Reproducible means: the same seed, data and config suggest the same configurations in the
same order, exactly so with ``max_concurrent_trials: 1``. With more trials at once, a TPE
suggestion depends on which earlier trials have finished when it is made, which depends on
timing; the first ``startup`` trials per family are random and seeded either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.search import ConcurrencyLimiter, Searcher

from pipelines.config import Search

__all__ = ["PerFamilySearcher", "startup_trials", "tpe_searcher"]


def startup_trials(num_samples: int) -> int:
    """Random trials per family before TPE models the results.

    Optuna's default (10) and HyperOpt's (20) would leave a sweep of a few dozen trials per
    family almost all random; a third of the budget, at least 2, at most 10, leaves TPE
    most of it.
    """
    return max(2, min(10, num_samples // 3))


def _family_searcher(search: Search, space: dict[str, Any], metric: str, mode: str,
                     seed: int, startup: int) -> Any:
    """One family's TPE searcher over its Tune search space (Tune domains)."""
    if search == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial
        return OptunaSearch(OptunaSearch.convert_search_space(space), metric=metric, mode=mode,
                            sampler=optuna.samplers.TPESampler(seed=seed,
                                                               n_startup_trials=startup))
    if search == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch

        return HyperOptSearch(HyperOptSearch.convert_search_space(space), metric=metric,
                              mode=mode, random_state_seed=seed, n_initial_points=startup)
    raise ValueError(f"train.search {search!r} has no TPE searcher (optuna, hyperopt)")


class PerFamilySearcher(Searcher):
    """One searcher per model family, trials handed out to the families in turn.

    ``searchers`` maps each family to its searcher, or to None when the family has nothing
    to search (its trials run its fixed parameters). A suggestion is Tune's trial config:
    ``{"family": name, name: {parameters}}``. The state (every family's searcher and the
    turn) is saved with the experiment, so ``Tuner.restore`` continues the same search.
    """

    def __init__(self, searchers: dict[str, Any], metric: str, mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self._searchers = dict(searchers)
        self._order = list(searchers)
        self._turn = 0
        self._family_of: dict[str, str] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        family = self._family_of.get(trial_id) or self._order[self._turn % len(self._order)]
        inner = self._searchers[family]
        params = inner.suggest(trial_id) if inner is not None else {}
        if params is None or params == self.FINISHED:
            return params
        if trial_id not in self._family_of:
            self._family_of[trial_id] = family
            self._turn += 1
        return {"family": family, family: params}

    def _inner(self, trial_id: str) -> Any:
        family = self._family_of.get(trial_id)
        return self._searchers.get(family) if family is not None else None

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        inner = self._inner(trial_id)
        if inner is not None:
            inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        inner = self._inner(trial_id)
        if inner is not None:
            inner.on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        from ray import cloudpickle  # HyperOpt's domain holds a lambda

        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        from ray import cloudpickle

        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(cloudpickle.load(f))


def tpe_searcher(search: Search, spaces: dict[str, dict[str, Any]], *, metric: str, mode: str,
                 seed: int, num_samples: int, max_concurrent: int,
                 make: Callable[..., Any] = _family_searcher) -> Any:
    """The sweep's search algorithm for ``search`` (optuna or hyperopt): a
    :class:`PerFamilySearcher` over ``spaces`` (each family's Tune search space) that runs at
    most ``max_concurrent`` trials at once. Every family's searcher is seeded with ``seed``.
    """
    startup = startup_trials(num_samples)
    searchers = {family: make(search, space, metric, mode, seed, startup) if space else None
                 for family, space in spaces.items()}
    return ConcurrencyLimiter(PerFamilySearcher(searchers, metric, mode),
                              max_concurrent=max_concurrent)
