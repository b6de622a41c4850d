"""Optional MLflow tracking. train.py imports this module only when MLFLOW_TRACKING_URI is set."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import mlflow

EXPERIMENT = "herdcount"


class MlflowLogger(keras.callbacks.Callback):
    """Logs each epoch's metrics to the active MLflow run."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = {k.replace("@", "_"): float(v) for k, v in (logs or {}).items() if _number(v)}
        mlflow.log_metrics(metrics, step=epoch + 1)


def _number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def start(run_name: str, params: dict[str, Any]) -> str:
    """Start an MLflow run under the experiment named by MLFLOW_EXPERIMENT_NAME (default
    ``herdcount``), log ``params`` and return the run id."""
    if "MLFLOW_EXPERIMENT_NAME" not in os.environ:
        mlflow.set_experiment(EXPERIMENT)
    run = mlflow.start_run(run_name=run_name)
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    return run.info.run_id


def finish(run_dir: Path, metrics: dict[str, float]) -> None:
    """Log the final metrics, the pictures, model.json and the model, then end the run."""
    mlflow.log_metrics({f"final_{k}": float(v) for k, v in metrics.items()})
    for name in sorted(p.name for p in run_dir.iterdir()):
        if name.endswith((".png", ".json", ".csv")):
            mlflow.log_artifact(str(run_dir / name))
    mlflow.log_artifact(str(run_dir / "model.keras"), artifact_path="model")
    mlflow.end_run()


def abort() -> None:
    """End the active run as failed."""
    mlflow.end_run(status="FAILED")
