"""Hot model swap: a replica follows its registry alias and loads new versions in place.

A :class:`ModelSlot` holds the replica's current :class:`~pipelines.model.engine.LoadedModel`.
A background thread checks every ``poll_interval_s`` where the URI points (an alias moves when
`raypipe promote` or a pipeline run re-points it); when it names another version, that version
is loaded next to the old one and the reference is switched in one assignment. Requests that
already hold the old model finish on it; later ones get the new one; none is dropped.

A version that fails to load leaves the old model serving and the slot *degraded* (``error``
says why) until the alias moves again. Serve's ``user_config`` (``reconfigure``) re-targets the
slot at another URI through the same path.

A store that cannot be reached when the replica starts (the tracking server is down, the
database refuses connections) leaves the slot *not ready* instead of failing the replica: the
replica answers liveness probes, reports not-ready, and retries the first load every
``retry_interval_s`` until the store is back. A model that does not exist is a configuration
error, not an outage, and fails the replica at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pipelines.model.engine import LoadedModel, ModelRef, load_ref, resolve_model
from pipelines.redact import redact

__all__ = ["STORE_UNREACHABLE", "ModelSlot", "promote", "store_unavailable"]

STORE_UNREACHABLE = "the model store is unreachable"

logger = logging.getLogger(__name__)

Resolver = Callable[[str], ModelRef]
Loader = Callable[[ModelRef], LoadedModel]
SwapCallback = Callable[[LoadedModel | None, LoadedModel], None]

# MLflow's codes for a store that failed rather than a request that was wrong. INTERNAL_ERROR is
# also MLflow's default code, so it counts only with its REST client's "API request to ...
# failed" (a refused connection, or a 5xx answer after the client's own retries).
_OUTAGE_CODES = frozenset({"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED",
                           "DEADLINE_EXCEEDED"})
# requests' and urllib3's network errors, which are not the builtin ConnectionError (a missing
# artifact file is an OSError too, and is a broken version, not an outage).
_NETWORK_ERRORS = frozenset({"ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout",
                             "MaxRetryError", "NewConnectionError", "ProtocolError"})


def store_unavailable(err: BaseException) -> bool:
    """True when ``err`` (or what caused it) says the store is unreachable, not the model wrong.

    Network and timeout errors, SQLAlchemy's operational errors (a database that refuses
    connections or cannot open its file) and MLflow errors with an outage code count; a
    missing model, version or alias does not.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError) or any(
                c.__name__ in _NETWORK_ERRORS for c in type(current).__mro__):
            return True
        kind = type(current)
        if kind.__module__.startswith("sqlalchemy") and kind.__name__ in (
                "OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError"):
            return True
        if kind.__name__ == "MlflowException":
            code = getattr(current, "error_code", None)
            if code in _OUTAGE_CODES or (code == "INTERNAL_ERROR"
                                         and str(current).startswith("API request to")):
                return True
        current = current.__cause__ or current.__context__
    return False


class ModelSlot:
    """The current model of one replica, and the loop that keeps it on the alias's version."""

    def __init__(self, model_uri: str, *, poll_interval_s: float,
                 resolve: Resolver = resolve_model, load: Loader = load_ref,
                 on_swap: SwapCallback | None = None,
                 on_fail: Callable[[], None] | None = None,
                 retry_interval_s: float = 5.0) -> None:
        self.model_uri = model_uri
        self.poll_interval_s = poll_interval_s
        self.retry_interval_s = retry_interval_s
        self._resolve = resolve
        self._load = load
        self._on_swap = on_swap
        self._on_fail = on_fail
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        """What went wrong last (first line, credentials masked); None while all is well."""
        self.reason: str | None = None
        """The same, coarse and fixed-vocabulary: what an open probe may say."""
        self.failed_uri: str | None = None
        self.last_check: float | None = None
        self.swaps = 0
        self.current: LoadedModel | None = None
        try:
            self.current = load(resolve(model_uri))
        except Exception as err:
            if not store_unavailable(err):
                raise  # a wrong URI or a broken model: no retry will fix it
            self.error = _message(f"cannot load {model_uri}: {type(err).__name__}: {err}")
            self.reason = STORE_UNREACHABLE
            logger.warning("model store unreachable at start, not ready; retrying every %.0f s: "
                           "%s", retry_interval_s, self.error)
            if on_fail:
                on_fail()
            return
        if on_swap:
            on_swap(None, self.current)

    @property
    def ready(self) -> bool:
        """A model is loaded (it may be an older one: see :attr:`degraded`)."""
        return self.current is not None

    @property
    def degraded(self) -> bool:
        return self.error is not None

    @property
    def follows_registry(self) -> bool:
        """An alias (``models:/name@alias``) can move; a pinned version or a path cannot."""
        return self.model_uri.startswith("models:/") and "@" in self.model_uri

    def refresh(self) -> bool:
        """Load the version the URI names now, if it is not the current one. True if swapped.

        Never raises: a failure keeps the current model (if any) and marks the slot degraded.
        """
        with self._lock:
            self.last_check = time.time()
            try:
                ref = self._resolve(self.model_uri)
            except Exception as err:
                self._fail(None, f"cannot resolve {self.model_uri}: {err}",
                           STORE_UNREACHABLE if store_unavailable(err) else "cannot resolve the model URI")
                return False
            if self.current is not None and ref.uri == self.current.ref.uri:
                self.error = self.reason = self.failed_uri = None
                return False
            if ref.uri == self.failed_uri:
                return False  # already failed; retry only when the alias moves again
            logger.info("model %s: loading version %s (serving %s)", ref.name, ref.version,
                        self.current.version if self.current else "none")
            try:
                new = self._load(ref)
            except Exception as err:
                # A broken version is not tried again until the alias moves; an outage is
                # retried at the next poll.
                outage = store_unavailable(err)
                self._fail(None if outage else ref.uri,
                           f"cannot load {ref.uri}: {type(err).__name__}: {err}",
                           STORE_UNREACHABLE if outage else "the model version failed to load")
                return False
            old, self.current = self.current, new
            self.error = self.reason = self.failed_uri = None
            self.swaps += old is not None  # a first load after an outage is no swap
        logger.info("model %s: now serving version %s (was %s)", new.name, new.version,
                    old.version if old else "none")
        if self._on_swap:
            self._on_swap(old, new)
        return True

    def retarget(self, model_uri: str) -> bool:
        """Follow another URI from now on (Serve ``user_config``); load it at once."""
        self.model_uri = model_uri
        self.failed_uri = None
        return self.refresh()

    def _fail(self, uri: str | None, message: str, reason: str) -> None:
        self.error, self.reason = _message(message), reason
        self.failed_uri = uri
        if self.current is None:
            logger.warning("model %s: still no model loaded: %s", self.model_uri, self.error)
        else:
            logger.warning("model %s: keeping version %s: %s", self.current.name,
                           self.current.version, self.error)
        if self._on_fail:
            self._on_fail()

    # ---------------------------------------------------------------- polling

    @property
    def _polls(self) -> bool:
        return self.poll_interval_s > 0 and self.follows_registry

    def start(self) -> None:
        """Poll in a daemon thread: the alias while it can move and the interval is not 0, and
        the first load until it succeeds."""
        if self._thread is not None or (self.current is not None and not self._polls):
            return
        self._thread = threading.Thread(target=self._run, name="raypipe-model-poll",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            waiting = self.current is None
            if self._stop.wait(self.retry_interval_s if waiting else self.poll_interval_s):
                return
            self.refresh()
            if self.current is not None and not self._polls:
                return  # loaded at last, and nothing to follow


def _message(text: str) -> str:
    """The first line of an error, credentials masked: it goes to logs and ``/metadata``."""
    return redact(text.splitlines()[0])[:500] if text.strip() else text


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
