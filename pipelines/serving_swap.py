"""Hot model swap: a replica follows its registry alias and loads new versions in place.

A :class:`ModelSlot` holds the replica's current :class:`~pipelines.serving_engine.LoadedModel`.
A background thread checks every ``poll_interval_s`` where the URI points (an alias moves when
`raypipe promote` or a pipeline run re-points it); when it names another version, that version
is loaded next to the old one and the reference is switched in one assignment. Requests that
already hold the old model finish on it; later ones get the new one; none is dropped.

A version that fails to load leaves the old model serving and the slot *degraded* (``error``
says why) until the alias moves again. Serve's ``user_config`` (``reconfigure``) re-targets the
slot at another URI through the same path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pipelines.serving_engine import LoadedModel, ModelRef, load_ref, resolve_model

__all__ = ["ModelSlot", "promote"]

logger = logging.getLogger(__name__)

Resolver = Callable[[str], ModelRef]
Loader = Callable[[ModelRef], LoadedModel]
SwapCallback = Callable[[LoadedModel | None, LoadedModel], None]


class ModelSlot:
    """The current model of one replica, and the loop that keeps it on the alias's version."""

    def __init__(self, model_uri: str, *, poll_interval_s: float,
                 resolve: Resolver = resolve_model, load: Loader = load_ref,
                 on_swap: SwapCallback | None = None,
                 on_fail: Callable[[], None] | None = None) -> None:
        self.model_uri = model_uri
        self.poll_interval_s = poll_interval_s
        self._resolve = resolve
        self._load = load
        self._on_swap = on_swap
        self._on_fail = on_fail
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self.failed_uri: str | None = None
        self.last_check: float | None = None
        self.swaps = 0
        # The first load must succeed: a replica without a model has nothing to serve.
        self.current: LoadedModel = load(resolve(model_uri))
        if on_swap:
            on_swap(None, self.current)

    @property
    def degraded(self) -> bool:
        return self.error is not None

    @property
    def follows_registry(self) -> bool:
        """An alias (``models:/name@alias``) can move; a pinned version or a path cannot."""
        return self.model_uri.startswith("models:/") and "@" in self.model_uri

    def refresh(self) -> bool:
        """Load the version the URI names now, if it is not the current one. True if swapped.

        Never raises: a failure keeps the current model and marks the slot degraded.
        """
        with self._lock:
            self.last_check = time.time()
            try:
                ref = self._resolve(self.model_uri)
            except Exception as err:
                self._fail(None, f"cannot resolve {self.model_uri}: {err}")
                return False
            if ref.uri == self.current.ref.uri:
                self.error = self.failed_uri = None
                return False
            if ref.uri == self.failed_uri:
                return False  # already failed; retry only when the alias moves again
            logger.info("model %s: loading version %s (serving %s)", ref.name, ref.version,
                        self.current.version)
            try:
                new = self._load(ref)
            except Exception as err:
                self._fail(ref.uri, f"cannot load {ref.uri}: {type(err).__name__}: {err}")
                return False
            old, self.current = self.current, new
            self.error = self.failed_uri = None
            self.swaps += 1
        logger.info("model %s: now serving version %s (was %s)", new.name, new.version,
                    old.version)
        if self._on_swap:
            self._on_swap(old, new)
        return True

    def retarget(self, model_uri: str) -> bool:
        """Follow another URI from now on (Serve ``user_config``); load it at once."""
        self.model_uri = model_uri
        self.failed_uri = None
        return self.refresh()

    def _fail(self, uri: str | None, message: str) -> None:
        self.error = message.splitlines()[0][:500]
        self.failed_uri = uri
        logger.warning("model %s: keeping version %s: %s", self.current.name,
                       self.current.version, self.error)
        if self._on_fail:
            self._on_fail()

    # ---------------------------------------------------------------- polling

    def start(self) -> None:
        """Poll in a daemon thread (no-op when the interval is 0 or the URI cannot move)."""
        if self.poll_interval_s <= 0 or not self.follows_registry or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="raypipe-model-poll",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            self.refresh()


def promote(name: str, version: str, alias: str = "champion") -> str | None:
    """Point ``alias`` of registered model ``name`` at ``version``; return the previous version.

    Running Serve replicas that follow the alias pick the new version up on their next poll.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    client.get_model_version(name, version)  # raises when the version does not exist
    try:
        previous: str | None = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        previous = None
    client.set_registered_model_alias(name, alias, version)
    logger.info("%s@%s: version %s -> %s", name, alias, previous, version)
    return previous
