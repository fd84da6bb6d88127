"""PyTorch MLP for tabular data, with early stopping on the validation loss.

The same epoch loop runs in-process inside a Tune trial and inside every Ray Train
``TorchTrainer`` worker (where the model is wrapped for DDP and the validation loss is
averaged across workers), so both paths stop at the same rule.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.families.base import (
    BaseFamily,
    FitContext,
    FitResult,
    NativeModel,
    Standardizer,
    TrainData,
    score,
)

__all__ = ["MLPFamily", "build_mlp", "load_train_state", "save_train_state", "train_epochs"]

WEIGHTS_FILE = "mlp.pt"
ARCH_FILE = "mlp.json"
SCALER_FILE = "scaler.json"
TRAIN_STATE_FILE = "mlp_train_state.pt"


def build_mlp(n_in: int, n_out: int, hidden_size: int, num_layers: int, dropout: float) -> Any:
    import torch.nn as nn

    layers: list[nn.Module] = []
    width = n_in
    for _ in range(num_layers):
        layers += [nn.Linear(width, hidden_size), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden_size
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def _outputs(task: str, num_classes: int) -> int:
    return num_classes if task == "multiclass" else 1


def _loss_fn(task: str) -> Any:
    import torch.nn as nn

    if task == "binary":
        return nn.BCEWithLogitsLoss()
    if task == "multiclass":
        return nn.CrossEntropyLoss()
    return nn.MSELoss()


def _target(task: str, y: np.ndarray, y_mean: float, y_std: float) -> Any:
    import torch

    if task == "multiclass":
        return torch.as_tensor(y, dtype=torch.long)
    if task == "regression":
        y = (y - y_mean) / y_std
    return torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1)


def train_epochs(
    model: Any,
    X: Any,
    y: Any,
    valid_loss: Callable[[], float],
    *,
    task: str,
    lr: float,
    weight_decay: float,
    batch_size: int,
    max_epochs: int,
    patience: int,
    seed: int,
    on_epoch: Callable[[int, float, Callable[[], dict[str, Any]]], None],
    resume: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], int]:
    """Mini-batch Adam with early stopping; returns the best state and its epoch count.

    ``on_epoch(epoch, valid_loss, snapshot)`` runs after every epoch; ``snapshot()`` is the
    loop's whole state after it (weights, optimiser, shuffling generator, early-stopping
    counters). Given back as ``resume``, the loop continues with the next epoch exactly as
    it would have without the interruption (on one CPU process exactly; under DDP every rank
    continues from rank 0's dropout generator, not its own). State dicts are the unwrapped
    module's, so a snapshot taken under DDP loads with or without the wrapper.
    """
    import torch

    core = getattr(model, "module", model)  # DDP wraps the module; its keys gain "module."
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = _loss_fn(task)
    best_loss, best_state, best_epoch, waited, epoch = float("inf"), None, 0, 0, 0
    if resume is not None:
        core.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        gen.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])  # dropout draws from the global generator
        best_loss, best_state = float(resume["best_loss"]), resume["best_state"]
        best_epoch, waited, epoch = int(resume["best_epoch"]), int(resume["waited"]), \
            int(resume["epoch"])

    def snapshot() -> dict[str, Any]:
        return {"epoch": epoch, "best_loss": best_loss, "best_epoch": best_epoch,
                "waited": waited, "best_state": best_state, "model": core.state_dict(),
                "optimizer": opt.state_dict(), "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state()}

    n = X.shape[0]
    while epoch < max_epochs and waited < patience:
        epoch += 1
        model.train()
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            opt.zero_grad()
            loss_fn(model(X[idx]), y[idx]).backward()
            opt.step()
        loss = valid_loss()
        if loss < best_loss - 1e-6:
            best_loss, best_epoch, waited = loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in core.state_dict().items()}
        else:
            waited += 1
        on_epoch(epoch, loss, snapshot)
    assert best_state is not None
    return best_state, best_epoch


def save_train_state(state: dict[str, Any], directory: Path) -> None:
    """Write a :func:`train_epochs` snapshot (tensors and numbers only)."""
    import torch

    torch.save(state, directory / TRAIN_STATE_FILE)


def load_train_state(directory: Path) -> dict[str, Any] | None:
    """The :func:`train_epochs` snapshot in ``directory``; None if it holds none (e.g. a
    finished model, which has no optimiser state to continue from)."""
    import torch

    path = directory / TRAIN_STATE_FILE
    if not path.is_file():
        return None
    state: dict[str, Any] = torch.load(path, weights_only=True)
    return state


class _Predictor:
    def __init__(self, model: Any, task: str, scaler: Standardizer, y_mean: float,
                 y_std: float, device: str = "cpu") -> None:
        self.model, self.task, self.scaler = model.eval(), task, scaler
        self.y_mean, self.y_std, self.device = y_mean, y_std, device

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            t = torch.as_tensor(self.scaler.apply(X), dtype=torch.float32, device=self.device)
            out = self.model(t).cpu()
        if self.task == "binary":
            return np.asarray(torch.sigmoid(out).numpy().reshape(-1), dtype=np.float64)
        if self.task == "multiclass":
            return np.asarray(torch.softmax(out, dim=1).numpy(), dtype=np.float64)
        return np.asarray(out.numpy().reshape(-1) * self.y_std + self.y_mean, dtype=np.float64)


class MLPFamily(BaseFamily):
    name = "mlp"
    libraries: tuple[str, ...] = ("torch",)
    requirements: tuple[str, ...] = ("torch",)
    data_parallel = "torch"
    input_dtype: type[np.floating] = np.float64

    def fit(self, params: dict[str, Any], train: TrainData, valid: TrainData,
            ctx: FitContext) -> FitResult:
        import torch

        torch.manual_seed(ctx.seed)
        torch.set_num_threads(ctx.threads)
        device = "cuda" if ctx.use_gpu else "cpu"
        settings = {"max_epochs": 30, "patience": 5, "batch_size": 512, "num_layers": 2,
                    **ctx.settings}
        arch = {
            "n_in": train.X.shape[1], "n_out": _outputs(ctx.task, ctx.num_classes),
            "hidden_size": int(params.get("hidden_size", 64)),
            "num_layers": int(params.get("num_layers", settings["num_layers"])),
            "dropout": float(params.get("dropout", 0.1)),
        }
        scaler = Standardizer.fit(train.X, scale=not ctx.settings.get("prescaled"))
        y_mean = float(train.y.mean()) if ctx.task == "regression" else 0.0
        y_std = float(train.y.std() or 1.0) if ctx.task == "regression" else 1.0
        model = build_mlp(**arch).to(device)
        X = torch.as_tensor(scaler.apply(train.X), dtype=torch.float32, device=device)
        y = _target(ctx.task, train.y, y_mean, y_std).to(device)
        Xv = torch.as_tensor(scaler.apply(valid.X), dtype=torch.float32, device=device)
        yv = _target(ctx.task, valid.y, y_mean, y_std).to(device)
        loss_fn = _loss_fn(ctx.task)
        predictor = _Predictor(model, ctx.task, scaler, y_mean, y_std, device)

        def valid_loss() -> float:
            model.eval()
            with torch.no_grad():
                return float(loss_fn(model(Xv), yv))

        def on_epoch(epoch: int, loss: float, _snapshot: Any) -> None:
            value = score(ctx.metric, ctx.task, valid.y, predictor.predict_raw(valid.X))
            ctx.report({ctx.metric: value, "round": epoch, "valid_loss": loss})

        state, epochs = train_epochs(
            model, X, y, valid_loss, task=ctx.task, lr=float(params.get("lr", 3e-3)),
            weight_decay=float(params.get("weight_decay", 1e-5)),
            batch_size=int(params.get("batch_size", settings["batch_size"])),
            max_epochs=int(settings["max_epochs"]), patience=int(settings["patience"]),
            seed=ctx.seed, on_epoch=on_epoch,
        )
        model.load_state_dict(state)
        model.cpu()
        final = _Predictor(model, ctx.task, scaler, y_mean, y_std)
        result = score(ctx.metric, ctx.task, valid.y, final.predict_raw(valid.X))
        return FitResult({"model": model, "arch": arch, "scaler": scaler, "task": ctx.task,
                          "y_mean": y_mean, "y_std": y_std}, result, epochs)

    def fit_distributed(self, params: dict[str, Any], train: TrainData, valid: TrainData,
                        ctx: FitContext, scaler: Standardizer) -> FitResult:
        """Fit on this worker's shard inside a Ray Train ``TorchTrainer`` run (DDP)."""
        return _fit_distributed(params, train, valid, ctx, scaler)

    def save(self, model: Any, directory: Path) -> None:
        import torch

        torch.save(model["model"].state_dict(), directory / WEIGHTS_FILE)
        (directory / ARCH_FILE).write_text(json.dumps({
            "arch": model["arch"], "task": model["task"], "y_mean": model["y_mean"],
            "y_std": model["y_std"],
        }))
        model["scaler"].save(directory / SCALER_FILE)

    def load(self, directory: Path) -> _Predictor:
        import torch

        meta = json.loads((directory / ARCH_FILE).read_text())
        model = build_mlp(**meta["arch"])
        # weights_only: the file holds tensors only, nothing is unpickled as code.
        model.load_state_dict(torch.load(directory / WEIGHTS_FILE, weights_only=True))
        torch.set_num_threads(1)
        return _Predictor(model, meta["task"], Standardizer.load(directory / SCALER_FILE),
                          meta["y_mean"], meta["y_std"])

    def native_model(self, predictor: Any, feature_names: list[str]) -> NativeModel:
        """The network with its fill, scaling and output transform, exported by
        ``torch.export`` (``mlflow.pytorch``, format ``pt2``): one float64 array in,
        ``predict_raw``'s values out.

        ``mlp.pt`` holds a state dict that only this module's :func:`build_mlp` can load;
        the exported graph needs torch alone, and unlike a pickled module it runs no code
        when loaded. It agrees with ``predict_raw`` to float32 rounding: the graph runs its own
        kernels (seen: one regression value in 300 one float32 unit in the last place apart).
        """
        return NativeModel("pytorch", _end_to_end(predictor), requirements=("torch",),
                           array_input=True, log_args={"serialization_format": "pt2"})

    def fixed_iterations(self, settings: dict[str, Any], iterations: int) -> dict[str, Any]:
        return {**settings, "max_epochs": iterations, "patience": iterations + 1}

    def importances(self, predictor: Any, feature_names: list[str]) -> dict[str, float]:
        # Mean absolute first-layer weight per input: a rough, honest proxy.
        first = next(p for p in predictor.model.parameters() if p.dim() == 2)
        weight = first.detach().abs().mean(dim=0).numpy()
        return {n: float(w) for n, w in zip(feature_names, weight, strict=True)}


def _end_to_end(predictor: _Predictor) -> Any:
    """``predictor`` as one module, computing in the same types as ``predict_raw``: fill and
    scale in float64, the network in float32, probabilities or values returned as float64."""
    import torch
    import torch.nn as nn

    class EndToEnd(nn.Module):
        fill: torch.Tensor
        mean: torch.Tensor
        std: torch.Tensor
        y_mean: torch.Tensor
        y_std: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.net = predictor.model
            for name, values in (("fill", predictor.scaler.fill), ("mean", predictor.scaler.mean),
                                 ("std", predictor.scaler.std)):
                self.register_buffer(name, torch.tensor(values, dtype=torch.float64))
            # predict_raw scales a float32 output by Python floats: numpy computes in float32.
            for name, value in (("y_mean", predictor.y_mean), ("y_std", predictor.y_std)):
                self.register_buffer(name, torch.tensor(value, dtype=torch.float32))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = (torch.where(torch.isnan(x), self.fill, x) - self.mean) / self.std
            out = self.net(z.float())
            if predictor.task == "binary":
                return torch.sigmoid(out).reshape(-1).double()
            if predictor.task == "multiclass":
                return torch.softmax(out, dim=1).double()
            return (out.reshape(-1) * self.y_std + self.y_mean).double()

    return EndToEnd().eval()


def standardizer_from_dataset(ds: Any, label_column: str, scale: bool = True) -> Standardizer:
    """Fill values and scales of every feature column, from one Ray Data aggregation pass.

    Used by data-parallel trials so that every worker scales with the same, global
    statistics. Mean and std ignore missing values here (the in-process path computes them
    after filling), a difference that only matters for columns with many missing values.
    """
    from ray.data.aggregate import ApproximateQuantile, Mean, Std

    columns = [c for c in ds.columns() if c != label_column]
    aggs: list[Any] = []
    for c in columns:
        aggs += [ApproximateQuantile(on=c, quantiles=[0.5], alias_name=f"q:{c}"),
                 Mean(on=c, ignore_nulls=True, alias_name=f"m:{c}"),
                 Std(on=c, ignore_nulls=True, alias_name=f"s:{c}")]
    stats = ds.aggregate(*aggs)

    def _num(v: Any, default: float) -> float:
        return float(v) if v is not None and np.isfinite(v) else default

    fill = [_num((stats[f"q:{c}"] or [None])[0], 0.0) for c in columns]
    mean = [_num(stats[f"m:{c}"], 0.0) for c in columns]
    std = [_num(stats[f"s:{c}"], 1.0) or 1.0 for c in columns]
    if not scale:  # the feature pipeline has scaled the features already
        mean, std = [0.0] * len(columns), [1.0] * len(columns)
    return Standardizer(fill, mean, [s if s > 1e-12 else 1.0 for s in std])


def _fit_distributed(params: dict[str, Any], train: TrainData,
                     valid: TrainData, ctx: FitContext, scaler: Standardizer) -> FitResult:
    """The same epoch loop on one DDP worker of a Ray Train ``TorchTrainer`` run."""
    import ray.train.torch as rtt
    import torch
    import torch.distributed as dist

    torch.manual_seed(ctx.seed)
    device = rtt.get_device()
    settings = {"max_epochs": 30, "patience": 5, "batch_size": 512, "num_layers": 2,
                "checkpoint_every": 5, **ctx.settings}

    def _sum(values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return [float(v) for v in t.tolist()]

    # DDP needs the same number of steps on every worker: cut shards to the smallest.
    sizes = torch.tensor([len(train.y)], dtype=torch.int64)
    dist.all_reduce(sizes, op=dist.ReduceOp.MIN)
    n_min = int(sizes.item())
    X_local, y_local = train.X[:n_min], train.y[:n_min]
    n_total, y_sum, y_sq = _sum([float(len(y_local)), float(y_local.sum()),
                                 float((y_local.astype(np.float64) ** 2).sum())])
    y_mean = y_sum / n_total if ctx.task == "regression" else 0.0
    y_std = float(np.sqrt(max(y_sq / n_total - y_mean**2, 1e-12))) if ctx.task == "regression" \
        else 1.0
    arch = {
        "n_in": train.X.shape[1], "n_out": _outputs(ctx.task, ctx.num_classes),
        "hidden_size": int(params.get("hidden_size", 64)),
        "num_layers": int(params.get("num_layers", settings["num_layers"])),
        "dropout": float(params.get("dropout", 0.1)),
    }
    model = rtt.prepare_model(build_mlp(**arch))
    base: Any = model.module if hasattr(model, "module") else model
    X = torch.as_tensor(scaler.apply(X_local), dtype=torch.float32, device=device)
    y = _target(ctx.task, y_local, y_mean, y_std).to(device)
    Xv = torch.as_tensor(scaler.apply(valid.X), dtype=torch.float32, device=device)
    yv = _target(ctx.task, valid.y, y_mean, y_std).to(device)
    loss_fn = _loss_fn(ctx.task)

    def valid_loss() -> float:
        model.eval()
        with torch.no_grad():
            local = float(loss_fn(model(Xv), yv)) * len(valid.y)
        total, count = _sum([local, float(len(valid.y))])
        return total / max(count, 1.0)

    every = int(settings["checkpoint_every"])

    def on_epoch(epoch: int, loss: float, snapshot: Callable[[], dict[str, Any]]) -> None:
        raw = _Predictor(base, ctx.task, scaler, y_mean, y_std, str(device)).predict_raw(valid.X)
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (raw, valid.y))
        all_raw = np.concatenate([g[0] for g in gathered])
        all_y = np.concatenate([g[1] for g in gathered])
        metrics = {ctx.metric: score(ctx.metric, ctx.task, all_y, all_raw), "round": epoch,
                   "valid_loss": loss}
        if ctx.checkpoint is not None and epoch % every == 0:
            ctx.checkpoint(snapshot(), metrics)  # every worker reports; rank 0 saves it
        else:
            ctx.report(metrics)

    state, epochs = train_epochs(
        model, X, y, valid_loss, task=ctx.task, lr=float(params.get("lr", 3e-3)),
        weight_decay=float(params.get("weight_decay", 1e-5)),
        batch_size=int(params.get("batch_size", settings["batch_size"])),
        max_epochs=int(settings["max_epochs"]), patience=int(settings["patience"]),
        seed=ctx.seed, on_epoch=on_epoch,
        resume=ctx.init_model,  # set when a restarted worker group continues a checkpoint
    )
    base.load_state_dict(state)
    base.cpu()
    final = _Predictor(base, ctx.task, scaler, y_mean, y_std)
    gathered_final: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered_final, (final.predict_raw(valid.X), valid.y))
    value = score(ctx.metric, ctx.task, np.concatenate([g[1] for g in gathered_final]),
                  np.concatenate([g[0] for g in gathered_final]))
    return FitResult({"model": base, "arch": arch, "scaler": scaler, "task": ctx.task,
                      "y_mean": y_mean, "y_std": y_std}, value, epochs)

