"""The ``raypipe`` command line: parse arguments, start Ray, call the runner, show progress."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.panel import Panel
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from pipelines.config import ConfigError, PipelineConfig, RuntimeConfig, load_config
from pipelines.errors import RaypipeError
from pipelines.redact import RedactingFilter, keep_mlflow_logs_with_ours, redact

__all__ = ["app", "main"]

app = typer.Typer(
    name="raypipe", help="Config-driven ML pipelines for tabular data on Ray.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
console = Console(stderr=True)
logger = logging.getLogger("pipelines.cli")


DISTRIBUTION = "raypipe-tabular"
"""The distribution name in pyproject.toml, whose installed version ``--version`` prints."""


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"raypipe {version(DISTRIBUTION)}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the installed raypipe version and exit.")] = False,
) -> None:
    """Config-driven ML pipelines for tabular data on Ray."""


class UserError(RaypipeError):
    """An error the user can fix; shown without a traceback."""


def _setup_logging(verbose: bool) -> None:
    # MLflow's lines reach the redacting handler below at the levels set here (a normal run
    # printed its "Creating initial MLflow database tables" INFO lines).
    keep_mlflow_logs_with_ours()
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=verbose)
    handler.addFilter(RedactingFilter())  # no credential in a URL reaches the terminal
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler],
                        force=True)
    logging.getLogger("pipelines").setLevel(logging.INFO if verbose else logging.WARNING)
    _quiet_libraries(verbose)


def _quiet_libraries(verbose: bool) -> None:
    # Ray Data configures its own loggers when imported, so this runs again after ray.init.
    for noisy in ("ray", "ray.data", "ray.tune", "ray.train", "ray.serve", "mlflow", "alembic",
                  "urllib3"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.ERROR)
    if not verbose:
        # Ray Data logs a failed task's traceback at ERROR before the error reaches the CLI,
        # which reports it in one line; the full trace stays in Ray Data's log file.
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)


_WARM_WORKERS = 8


def _local_system_config() -> dict[str, int]:
    """Raylet settings of the instance ``raypipe`` starts itself.

    Ray keeps as many idle workers as the node has CPUs and kills the rest a second after
    they go idle. A run's stages use different processes in turn (Ray Data tasks, Tune's trial
    actors, the predictor pool), so on a small machine every stage started workers again that
    re-imported pandas, pyarrow and raypipe: the 50,000-row demo started 14 worker processes
    and took 69 s of CPU on 2 cores; with 8 kept it starts 9 and takes 54-57 s. Idle workers cost
    memory only. Larger nodes keep one per CPU already.
    """
    cpus = os.cpu_count() or 1
    return {"num_workers_soft_limit": _WARM_WORKERS} if cpus < _WARM_WORKERS else {}


def _init_ray(runtime: RuntimeConfig, verbose: bool) -> None:
    """Connect to ``runtime.ray_address`` / ``$RAY_ADDRESS``, else start a local instance."""
    import ray

    # Tune's boxed progress tables would interleave with the Rich progress shown here.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    address = runtime.ray_address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=verbose)
    else:
        # Local instance: the dashboard stays off (it is also the job API) and nothing
        # listens beyond loopback.
        ray.init(include_dashboard=False, log_to_driver=verbose, configure_logging=False,
                 _system_config=_local_system_config())
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose
    _quiet_libraries(verbose)


def _fail(message: str, code: int = 1) -> typer.Exit:
    # Error texts quote what failed, a URL with its credentials included: mask them.
    console.print(f"[bold red]error:[/] {redact(message)}")
    return typer.Exit(code)


def _load(config: Path | None, overrides: list[str]) -> PipelineConfig:
    try:
        return load_config(config, overrides)
    except ConfigError as err:
        raise _fail(str(err), 2) from None


def _summary(s: Any) -> None:
    if s.metrics:
        _metrics_table(s)
    lines = [f"mlflow run   {s.run_id}"]
    if s.model_version:
        lines.insert(0, f"model        {s.model_uri}  (version {s.model_version})")
    if "rows_in" in s.counts:
        lines.append(
            f"rows         {s.counts.get('rows_in')} in, {s.counts.get('rows_quarantined')} "
            f"quarantined, {s.counts.get('rows_train')}/{s.counts.get('rows_valid_split')}/"
            f"{s.counts.get('rows_test')} train/valid/test")
    if s.family:
        lines.append(f"training     best family {s.family}, {s.parallelism}")
    if s.alias:
        lines.append(f"gate         @{s.alias}: {s.gate_reason}")
    lines += [f"{k:<12} {v}" for k, v in s.outputs.items()]
    lines.append(f"reused       {', '.join(s.reused_stages) or 'nothing (every stage ran)'}")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in s.stage_seconds.items())
    lines.append(f"wall time    {s.wall_seconds:.1f}s ({stages})")
    console.print(Panel("\n".join(lines), title="raypipe run finished", border_style="green"))


def _metrics_table(s: Any) -> None:
    table = Table(title=f"test metrics ({s.task})", show_header=True)
    table.add_column("metric")
    table.add_column("new model", justify="right")
    if s.champion_metrics is not None:
        table.add_column("previous champion", justify="right")
    for k, v in s.metrics.items():
        if "_class_" in k:
            continue
        row = [k, f"{v:.4f}"]
        if s.champion_metrics is not None:
            row.append(f"{s.champion_metrics.get(k, float('nan')):.4f}")
        table.add_row(*row)
    console.print(table)


OverrideOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config field: section.field=value (repeatable)."),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show logs and tracebacks.")]


@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="Pipeline YAML; default: the demo.")] = None,
    rows: Annotated[int | None, typer.Option(help="Demo source: rows to generate.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted run: its finished stages, its Tune sweep "
        "and its MLflow run.")] = False,
    from_stage: Annotated[str | None, typer.Option(
        "--from", help="Recompute this stage and every later one (earlier ones may be reused).",
        metavar="STAGE")] = None,
    only: Annotated[str | None, typer.Option(
        "--only", help="Run only this stage, on the cached outputs of the stages before it.",
        metavar="STAGE")] = None,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Recompute every stage, even those whose inputs did not change.")] = False,
    overrides: OverrideOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run the pipeline: ingest, validate, split, features, tune, register, predict, gate.

    Stages whose inputs (config section, code, data) did not change since an earlier run are
    reused from the stage cache and shown as "reused".
    """
    _setup_logging(verbose)
    sets = list(overrides or [])
    if rows is not None:
        sets.append(f"source.rows={rows}")
    cfg = _load(config, sets)
    if rows is not None and cfg.source.kind != "demo":
        raise _fail("--rows applies to the demo source only", 2)

    from pipelines.runner import STAGES, plan_stages, run_pipeline

    try:
        plan_stages(from_stage, only, no_cache=no_cache)
    except ValueError as err:
        raise _fail(str(err), 2) from None
    t0 = time.perf_counter()
    # Four redraws a second, not Rich's ten: the redraw thread holds the GIL that the driver's
    # Ray Data executor and Tune loop need (2 s of the 50k demo's driver CPU at ten).
    with Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}", table_column=Column(width=9)),
        TextColumn("{task.fields[detail]}", table_column=Column(ratio=1)),
        TimeElapsedColumn(), console=console, transient=False, expand=True,
        refresh_per_second=4,
    ) as progress:
        boot = progress.add_task("ray", total=1, detail="not needed yet", start=False)
        tasks = {s: progress.add_task(s, total=1, detail="", start=False) for s in STAGES}

        def connect() -> None:
            # Only when a stage must compute: an unchanged run never starts Ray.
            t1 = time.perf_counter()
            progress.start_task(boot)
            progress.update(boot, detail="starting")
            _init_ray(cfg.runtime, verbose)
            progress.update(boot, completed=1, detail=f"ready in {time.perf_counter() - t1:.1f}s")

        started: dict[str, str] = {}

        def on_stage(name: str, event: str, detail: str) -> None:
            if event == "start":
                started[name] = detail
                progress.start_task(tasks[name])
                progress.update(tasks[name], detail=detail or "running")
            elif event == "progress":  # the sweep's trials: done / total, running, best so far
                progress.update(tasks[name], detail=" · ".join(filter(None, [started.get(name),
                                                                           detail])))
            else:
                progress.update(tasks[name], completed=1, detail=detail)

        summary = _guarded(lambda: run_pipeline(cfg, on_stage=on_stage, resume=resume,
                                                from_stage=from_stage, only=only,
                                                use_cache=not no_cache, connect=connect),
                           verbose)
        if not progress.tasks[boot].started:
            progress.start_task(boot)
            progress.update(boot, completed=1, detail="not needed: nothing to compute")
    summary.wall_seconds = time.perf_counter() - t0
    _summary(summary)


def _guarded(fn: Any, verbose: bool) -> Any:
    """Run ``fn``; an error the user can fix becomes one clear line instead of a traceback."""
    try:
        return fn()
    except RaypipeError as err:
        raise _fail(str(err)) from None
    except Exception as err:
        if verbose:
            raise
        raise _fail(f"{type(err).__name__}: {err}\n(run with --verbose for the traceback)") from None


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="Pipeline YAML to check.")],
    overrides: OverrideOpt = None,
) -> None:
    """Check a config file without running it."""
    _setup_logging(False)
    cfg = _load(config, list(overrides or []))
    console.print(f"[green]ok[/]: {config} is a valid pipeline config for {cfg.name!r} "
                  f"(source {cfg.source.kind}, target {cfg.target!r})")


def _profile_settings(overrides: list[str]) -> Any:
    """Profile settings for a bare data path: only ``schema.profile.*`` overrides apply."""
    from pipelines.config import parse_config

    wrong = [o for o in overrides if not o.strip().startswith("schema.profile.")]
    if wrong:
        raise _fail(f"with a data path only schema.profile.* can be set, not {wrong[0]!r}", 2)
    probe = {"name": "profile", "source": {"kind": "demo"}, "target": "_"}
    try:
        return parse_config(probe, overrides, origin="--set").schema_.profile
    except ConfigError as err:
        raise _fail(str(err), 2) from None


@app.command()
def profile(
    source: Annotated[str, typer.Argument(
        help="Data file, folder or glob (Parquet, CSV, JSON Lines), or a pipeline YAML.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Folder for contract.yaml and quality_report.{json,html}.")] = Path(
        "profile"),
    format: Annotated[str | None, typer.Option(help="parquet | csv | json; default: by suffix.")] = None,
    overrides: OverrideOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Profile data and infer a data contract to paste under the config's `schema:`."""
    _setup_logging(verbose)
    sets = list(overrides or [])
    is_config = source.endswith((".yaml", ".yml"))
    cfg = _load(Path(source), sets) if is_config else None
    settings = cfg.schema_.profile if cfg else _profile_settings(sets)

    def _do() -> Any:
        from pipelines.quality import profile_to_files
        from pipelines.stages.ingest import read_files, read_source, resolve_paths

        if cfg is None:
            resolve_paths(source)  # a missing input fails here, before Ray starts
        _init_ray(cfg.runtime if cfg else RuntimeConfig(), verbose)
        if cfg is not None:
            ds, label = read_source(cfg.source, cfg.work_dir), f"{source} (source {cfg.source.kind})"
        else:
            ds, label = read_files(source, _format_of(source, format)), source
        return profile_to_files(ds, settings, label, output)

    done = _guarded(_do, verbose)
    lines = [f"rows         {done.profile.rows}, {len(done.profile.columns)} columns",
             f"contract     {done.contract_path}",
             f"report       {done.html_path}",
             f"unique key   {', '.join(done.unique_key) or 'none found'}"]
    lines += [f"anomaly      {a.message}" for a in done.profile.anomalies]
    console.print(Panel("\n".join(lines), title="raypipe profile", border_style="green"))


def _tracking_uri(explicit: str | None) -> str:
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or (
        f"sqlite:///{(Path(RuntimeConfig().work_dir) / 'mlflow.db').resolve()}"
    )


def _format_of(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = Path(path.rstrip("/*")).suffix.lower().lstrip(".")
    return {"csv": "csv", "json": "json", "jsonl": "json"}.get(suffix, "parquet")


def _model_uri(model: str | None, cfg: PipelineConfig | None) -> str:
    if model:
        return _checked_model_option(model)
    if cfg is None:
        raise _fail("give --model (e.g. models:/NAME@champion) or --config", 2)
    return cfg.model_uri


def _checked_model_option(model: str) -> str:
    """``--model`` if its name, alias or version obey the registry naming rules; the name
    becomes a folder name (request logs), so it is checked before anything runs."""
    from pipelines.config import parse_model_uri

    try:
        parse_model_uri(model)
    except ConfigError as err:
        raise _fail(f"--model: {err}", 2) from None
    return model


def _check_predict_output(output: str, output_field: str, input: str | None, input_field: str,
                          overwrite: bool) -> None:
    """Before Ray starts: the output folder may be written (see :mod:`pipelines.outputs`)."""
    from pipelines.outputs import OutputFolderError, check_output

    try:
        check_output(output, input, overwrite=overwrite, output_field=output_field,
                     input_field=input_field)
    except OutputFolderError as err:
        raise _fail(str(err), 2) from None


@app.command()
def predict(
    model: Annotated[str | None, typer.Option(
        help="Model URI, e.g. models:/NAME@champion (default: the config's name and alias).")] = None,
    input: Annotated[str | None, typer.Option(
        "--input", help="Raw input file, folder or glob (default: the config's batch.input).")] = None,
    output: Annotated[str | None, typer.Option(
        help="Output folder for Parquet predictions (default: the config's batch.output_dir).")] = None,
    format: Annotated[str | None, typer.Option(help="parquet | csv | json; default: by suffix.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
    config: Annotated[Path | None, typer.Option(help="Pipeline YAML for batch settings.")] = None,
    overrides: OverrideOpt = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace an output folder an earlier `raypipe predict` wrote (it holds a "
             "_RAYPIPE_OUTPUT marker); any other non-empty folder is refused.")] = False,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Add per-row attributions: contribution_<column> for every input "
        "column and contribution_bias, adding up to the model's margin (XGBoost: TreeSHAP; "
        "linear: coefficient x value; the MLP is refused).")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Batch inference on raw rows: every row is predicted or quarantined with a reason.

    The predictions replace the output folder only when the run has finished; a failed run
    leaves the previous output as it was.
    """
    _setup_logging(verbose)
    sets = list(overrides or [])
    cfg = _load(config, sets) if config or sets else None
    from pipelines.config import AnySource, BatchConfig, FileSource

    batch_cfg = cfg.batch if cfg else BatchConfig()
    if explain:
        batch_cfg = batch_cfg.model_copy(update={"explain": True})
    uri = cfg.tracking_uri if cfg and not tracking_uri else _tracking_uri(tracking_uri)
    model_uri = _model_uri(model, cfg)
    if input is None and batch_cfg.input is None:
        raise _fail("give --input, or batch.input in the --config file", 2)
    if output is None and batch_cfg.output_dir is None:
        raise _fail("give --output, or batch.output_dir in the --config file", 2)
    out = output or str(batch_cfg.output_dir)
    input_path = input or (batch_cfg.input.path if isinstance(batch_cfg.input, FileSource)
                           else None)
    _check_predict_output(out, "--output" if output else "batch.output_dir", input_path,
                          "--input" if input else "batch.input.path", overwrite)

    def _do() -> Any:
        import mlflow

        from pipelines.model.engine import load_model
        from pipelines.stages.batch import count_parquet_rows, run_batch_inference
        from pipelines.stages.ingest import read_files, read_source, resolve_paths, source_errors

        mlflow.set_tracking_uri(uri)
        try:
            loaded = load_model(model_uri, check_fast_path=False)
        except Exception as err:
            raise UserError(f"cannot load model {model_uri!r} from {uri}: {err}") from None
        _init_ray(cfg.runtime if cfg else RuntimeConfig(), verbose)
        rows_in = None
        if input is not None:
            fmt = _format_of(input, format)
            source: AnySource = FileSource.model_validate({"path": input, "format": fmt})
            ds = read_files(input, fmt)
            if fmt == "parquet" and "://" not in input:
                rows_in = count_parquet_rows(resolve_paths(input))
        else:
            assert batch_cfg.input is not None
            source = batch_cfg.input
            ds = read_source(source, cfg.work_dir if cfg else Path("."))
        loaded.pipeline.check_columns(ds.columns())
        # Pinned to the version just checked, whatever the alias does meanwhile.
        with source_errors(source):  # a lazy read that fails names its file or page
            return run_batch_inference(ds, model_uri=loaded.ref.uri, tracking_uri=uri,
                                       cfg=batch_cfg, output_dir=out, rows_in=rows_in,
                                       overwrite=overwrite)

    with console.status("predicting"):
        result = _guarded(_do, verbose)
    note = (f", {result.rows_quarantined} quarantined in {result.quarantine_dir}"
            if result.rows_quarantined else "")
    console.print(f"[green]done[/]: {result.rows_in} rows in, {result.rows_predicted} predictions "
                  f"(model version {result.model_version}) in {out}{note}")


@app.command()
def serve(
    model: Annotated[str | None, typer.Option(
        help="Model URI, e.g. models:/NAME@champion (default: the config's name and alias).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: config or 8000).")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
    config: Annotated[Path | None, typer.Option(help="Pipeline YAML for serve settings.")] = None,
    overrides: OverrideOpt = None,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print what would be served as a Ray Serve config file "
        "(`serve deploy`, a RayService's serveConfigV2) and exit.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the model over HTTP with Ray Serve until interrupted.

    One app answers /predict, MLflow's /invocations and KServe V2 under /v2; replicas follow
    the model's alias and swap in new versions without dropping requests.
    """
    _setup_logging(verbose)
    sets = list(overrides or [])
    cfg = _load(config, sets) if config or sets else None
    from pipelines.config import ServeConfig

    scfg = cfg.serve if cfg else ServeConfig()
    bind_host, bind_port = host or scfg.host, port or scfg.port
    if print_config:
        given = [("--config", config), *(("--set", o) for o in sets), ("--model", model),
                 ("--host", host), ("--port", port)]
        command = ["raypipe", "serve", *(a for flag, v in given if v for a in (flag, str(v))),
                   "--print-config"]
        _print_serve_config(scfg.model_copy(update={"host": bind_host, "port": bind_port}),
                            _model_uri(model, cfg), command)
        return
    for warning in bind_warnings(bind_host, scfg):
        console.print(f"[yellow]warning:[/] {warning}")
    uri = cfg.tracking_uri if cfg and not tracking_uri else _tracking_uri(tracking_uri)
    model_uri = _model_uri(model, cfg)
    runtime = cfg.runtime if cfg else RuntimeConfig()
    request_log = _request_log_args(cfg, model_uri)

    def _start() -> None:
        from ray import serve as ray_serve

        from pipelines.serving import build_app

        if scfg.ingress == "haproxy":
            if runtime.ray_address or os.environ.get("RAY_ADDRESS"):
                console.print("[yellow]note:[/] serve.ingress=haproxy takes effect only where "
                              "the cluster was started with RAY_SERVE_ENABLE_HA_PROXY=1")
            # Read by every Ray process at start-up: set before the local instance starts.
            os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
            os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
        _init_ray(runtime, verbose)
        ray_serve.start(proxy_location=scfg.proxy_location,
                        http_options={"host": bind_host, "port": bind_port})
        ray_serve.run(build_app({**scfg.model_dump(), "model_uri": model_uri,
                                 "tracking_uri": uri, "host": bind_host, "port": bind_port,
                                 **request_log}),
                      name=SERVE_APP_NAME, route_prefix="/")

    # SIGTERM (a process manager, `kill`) stops the app as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with console.status("starting Ray Serve"):
            _guarded(_start, verbose)
        base = f"http://{bind_host}:{bind_port}"
        console.print(f"[green]serving[/] {model_uri} at {base}/predict, {base}/invocations "
                      f"(MLflow), {base}/v2 (KServe V2); docs at {base}/docs (Ctrl-C to stop)")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        _stop_serve_app(SERVE_APP_NAME)


def _print_serve_config(scfg: Any, model_uri: str, command: list[str]) -> None:
    """The Serve config file for these settings on stdout, headed by the command that makes it."""
    from pipelines.serving.config_file import render, serve_config

    typer.echo(render(serve_config(scfg, model_uri, SERVE_APP_NAME), command), nl=False)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def bind_warnings(host: str, scfg: Any) -> list[str]:
    """What to warn about before serving on ``host``: loopback is the default and is quiet;
    any other address is an explicit choice that is said out loud, twice without auth."""
    if host in LOOPBACK:
        return []
    out = [f"serving on {host}: reachable beyond this machine"]
    if not (scfg.auth_token_env or scfg.auth_token_file):
        out.append("no auth token configured (serve.auth_token_env or serve.auth_token_file): "
                   "anyone who reaches the port can call the model")
    return out


def _request_log_args(cfg: PipelineConfig | None, model_uri: str) -> dict[str, Any]:
    """Request logging settings for the Serve app: the config's, else the defaults, writing
    under the default work dir in a folder named after the model."""
    from pipelines.config import RequestLogConfig
    from pipelines.model.engine import parse_model_uri

    if cfg is not None:
        return {"request_log": cfg.monitor.request_log.model_dump(),
                "request_log_path": cfg.request_log_path}
    name = parse_model_uri(model_uri)[0] or "model"
    path = (Path(RuntimeConfig().work_dir) / "request_logs" / name).resolve()
    return {"request_log": RequestLogConfig().model_dump(), "request_log_path": str(path)}


@app.command()
def monitor(
    window: Annotated[str | None, typer.Option(
        help="Rows to check: request logs or batch predictions (file, folder, glob or URI; "
             "default: the config's request log folder).")] = None,
    config: Annotated[Path | None, typer.Option(
        help="Pipeline YAML: monitor thresholds, tracking, model name (default: the demo).")] = None,
    model: Annotated[str | None, typer.Option(
        help="Model URI whose training reference to compare with (default: the config's "
             "name and alias).")] = None,
    labels: Annotated[str | None, typer.Option(
        help="Late labels: a table with monitor.id_column and the target column.")] = None,
    since: Annotated[str | None, typer.Option(help="Only requests at or after this time (ISO, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Only requests before this time (ISO, UTC).")] = None,
    format: Annotated[str | None, typer.Option(help="parquet | csv | json; default: by suffix.")] = None,
    overrides: OverrideOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Compare logged inputs and predictions with the model's training reference.

    Writes an HTML report and a JSON summary (also logged to MLflow). Exit code 3 when a
    threshold is crossed (drift, missing values, new categories or, with --labels, quality).
    """
    _setup_logging(verbose)
    sets = list(overrides or [])
    cfg = _load(config, sets)
    window_path = window or cfg.request_log_path
    if model is not None:
        _checked_model_option(model)

    def _do() -> Any:
        from pipelines.monitoring import MonitorOptions
        from pipelines.monitoring import monitor as run_monitor

        _init_ray(cfg.runtime, verbose)
        opts = MonitorOptions(window=window_path, model_uri=model, window_format=format,
                              since=since, until=until, labels=labels,
                              config_path=str(config) if config else None, overrides=sets)
        try:
            return run_monitor(cfg, opts)
        except (ValueError, FileNotFoundError) as err:
            raise UserError(str(err)) from None

    with console.status("monitoring"):
        result = _guarded(_do, verbose)
    _monitor_summary(result.summary, result.report_path)
    if result.flagged:
        raise typer.Exit(MONITOR_FLAGGED_EXIT)


MONITOR_FLAGGED_EXIT = 3
"""`raypipe monitor` exit code when a threshold is crossed (1 and 2 are errors)."""


def _monitor_summary(s: dict[str, Any], report: object) -> None:
    table = Table(title=f"drift: {s['window']['rows']} rows vs {s['reference_rows']} "
                        f"training rows", show_header=True)
    for col in ("column", "PSI", "test", "statistic", "p-value", "missing", "new cat.", "verdict"):
        table.add_column(col)

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.3g}"

    for d in [*s["features"], s["prediction"]]:
        table.add_row(d["column"], num(d["psi"]), d["test"] or "-", num(d["statistic"]),
                      num(d["p_value"]), num(d["missing_rate"]), num(d["new_category_rate"]),
                      "[red]" + "; ".join(d["reasons"]) + "[/]" if d["flagged"] else "ok")
    console.print(table)
    lines = [f"model        {s['model']['uri']} (version {s['model']['version']})",
             f"report       {report}", f"mlflow run   {s.get('mlflow_run_id')}"]
    if s.get("quality"):
        lines.append(f"quality      {s['quality']['rows']} labelled rows: {s['quality']['verdict']}")
    if s.get("webhook"):
        lines.append(f"webhook      {s['webhook']}")
    if s.get("retrain_job"):
        lines.append(f"retraining   Ray job {s['retrain_job']}")
    flagged = s["flagged"]
    lines.append("verdict      " + ("THRESHOLD CROSSED: " + "; ".join(s["alerts"]) if flagged
                                    else "no threshold crossed"))
    console.print(Panel("\n".join(lines), title="raypipe monitor",
                        border_style="red" if flagged else "green"))


@app.command()
def promote(
    model: Annotated[str, typer.Option(help="Registered model name.")],
    version: Annotated[str, typer.Option(help="Model version to point the alias at.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
    config: Annotated[Path | None, typer.Option(help="Pipeline YAML for the tracking URI.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Point a registry alias at a model version; running servers that follow it swap to it."""
    _setup_logging(verbose)
    cfg = _load(config, []) if config else None
    uri = cfg.tracking_uri if cfg and not tracking_uri else _tracking_uri(tracking_uri)

    def _do() -> str | None:
        import mlflow

        from pipelines.serving.swap import promote as move_alias

        mlflow.set_tracking_uri(uri)
        try:
            return move_alias(model, version, alias)
        except Exception as err:
            raise UserError(f"cannot point {model}@{alias} at version {version} in {uri}: "
                            f"{str(err).splitlines()[0]}") from None

    previous = _guarded(_do, verbose)
    console.print(f"[green]promoted[/]: {model}@{alias} -> version {version} "
                  f"(was {previous or 'unset'}); servers following it switch on their next poll")


SERVE_APP_NAME = "raypipe"


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_serve_app(name: str) -> None:
    """Remove our app; stop Serve altogether when no other application is left on it.

    Serve apps outlive the driver that deployed them on a shared cluster, so a stopped
    `raypipe serve` must clean up after itself.
    """
    import ray
    from ray import serve as ray_serve

    if not ray.is_initialized():
        return
    try:
        ray_serve.delete(name)
        if not ray_serve.status().applications:
            ray_serve.shutdown()
    except Exception as err:  # cleanup must not hide the reason we are stopping
        logger.warning("could not stop Serve app %s: %s", name, err)


def _shutdown_ray() -> None:
    """Stop the Ray this process started (or disconnect from a cluster's) once the command ends.

    Ray's own exit handler does the same but first sleeps half a second so that workers' log
    lines can reach the driver; ``raypipe`` does not forward them (``log_to_driver`` is off
    unless ``--verbose``), so that wait is pure latency at the end of every command.
    """
    if "ray" not in sys.modules:  # an unchanged re-run never imported it
        return
    import ray

    if ray.is_initialized():
        ray.shutdown()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
        code: int | str | None = 0
    except SystemExit as done:  # how Typer ends every command
        code = done.code
    except KeyboardInterrupt:
        console.print("interrupted")
        code = 130
    _shutdown_ray()
    _end_process(code)


def _end_process(code: int | str | None) -> None:
    """Run the exit handlers, then end the process without tearing the interpreter down.

    The command is done: what is left on the heap (MLflow, Ray, pandas, pydantic models)
    would live until the process ends anyway. Python's finalisation after the exit handlers
    walks all of it (its last garbage collection and the modules' teardown), 2-3 s after a
    pipeline run on 2 cores, and frees nothing the OS would not; after a run that profiled
    data it also made datasketches (a nanobind extension) print dozens of "leaked instances"
    lines. The exit handlers (logging's flush, MLflow's, tempfile's clean-up, Ray's) still
    run first, and the streams are flushed, so nothing the command wrote is lost.
    """
    import threading

    # What the interpreter's exit does first, in its order: tell the thread pools to stop
    # (concurrent.futures registers that with threading), wait for the non-daemon threads,
    # then run the atexit handlers. Joining the threads alone would wait forever on an idle
    # pool's workers.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    if isinstance(code, str):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
    status = 0 if code is None else code if isinstance(code, int) else 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nowhere to write
            stream.flush()
    os._exit(status)
