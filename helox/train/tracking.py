"""MLflow run tracking: parameters once, metrics by step; nothing at all when disabled."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_DB = Path("results") / "mlflow.db"
PARENT_TAG = "mlflow.parentRunId"
PIPELINE_TAG = "helox.pipeline"
FINAL_DIR_TAG = "helox.final_dir"
PARAMS_PER_CALL = 100
MAX_PARAM_CHARS = 6000


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = ""  # "" = sqlite:///results/mlflow.db
    experiment: str = "helox"


def tracking_uri(config: TrackingConfig) -> str:
    """The configured URI, or an SQLite store at `results/mlflow.db` under the working folder."""
    if config.uri:
        return config.uri
    return "sqlite:///" + str(DEFAULT_DB.resolve())


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"model": {"hidden_size": 64}} -> {"model.hidden_size": "64"}."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_CHARS]
    return flat


class Tracker:
    """One MLflow run, as a context manager; every method is a no-op when tracking is disabled.

    With a `pipeline` key the run nests under the pipeline run tagged with that key,
    which the first run to need it creates.
    """

    def __init__(
        self,
        config: TrackingConfig,
        run_name: str,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        pipeline: str | None = None,
    ):
        self.config = config
        self.run_name = run_name
        self.params = params or {}
        self.tags = tags or {}
        self.pipeline = pipeline
        self._client = None
        self._run_id: str | None = None
        self._parent_id: str | None = None

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def __enter__(self) -> Tracker:
        if not self.enabled:
            return self
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        uri = tracking_uri(self.config)
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self._client = MlflowClient(tracking_uri=uri)
        experiment = self._client.get_experiment_by_name(self.config.experiment)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            artifacts = (
                None if self.config.uri else str(DEFAULT_DB.parent.resolve() / "mlartifacts")
            )
            experiment_id = self._client.create_experiment(
                self.config.experiment, artifact_location=artifacts
            )
        tags = dict(self.tags)
        if self.pipeline:
            self._parent_id = self._pipeline_run(experiment_id)
            self._client.update_run(self._parent_id, status="RUNNING")
            tags[PARENT_TAG] = self._parent_id
        run = self._client.create_run(experiment_id, run_name=self.run_name, tags=tags)
        self._run_id = run.info.run_id
        params = [Param(k, v) for k, v in flatten(self.params).items()]
        for start in range(0, len(params), PARAMS_PER_CALL):
            self._client.log_batch(self._run_id, params=params[start : start + PARAMS_PER_CALL])
        log.info("tracking run %s (%s) at %s", self.run_name, self._run_id, uri)
        return self

    def _pipeline_run(self, experiment_id: str) -> str:
        """The id of the run tagged with this pipeline key, created if there is none."""
        found = self._client.search_runs(
            [experiment_id], f"tags.`{PIPELINE_TAG}` = '{self.pipeline}'", max_results=1
        )
        if found:
            return found[0].info.run_id
        tags = {PIPELINE_TAG: self.pipeline, "helox.workdir": str(Path.cwd().resolve())}
        run = self._client.create_run(experiment_id, run_name="pipeline", tags=tags)
        return run.info.run_id

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tag the run, e.g. with references to what it wrote."""
        if self._client is None:
            return
        from mlflow.entities import RunTag

        self._client.log_batch(self._run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Record finite numeric `metrics` at `step`."""
        if self._client is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), now, step)
            for key, value in metrics.items()
            if math.isfinite(float(value))
        ]
        if batch:
            self._client.log_batch(self._run_id, metrics=batch)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._client is None:
            return
        status = "FAILED" if exc_type else "FINISHED"
        self._client.set_terminated(self._run_id, status=status)
        if self._parent_id:
            self._client.set_terminated(self._parent_id, status=status)
        self._client = None


def log_to_final_run(
    config: TrackingConfig, final_dir: str | Path, metrics: dict[str, float], step: int = 0
) -> None:
    """Add `metrics` to the run that wrote `final_dir` (tagged `helox.final_dir`); a warning,
    not an error, where tracking is off or no such run is found."""
    if not config.enabled:
        return
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=tracking_uri(config))
    experiment = client.get_experiment_by_name(config.experiment)
    final_dir = str(Path(final_dir).resolve())
    runs = (
        client.search_runs(
            [experiment.experiment_id],
            f"tags.`{FINAL_DIR_TAG}` = '{final_dir}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if experiment is not None
        else []
    )
    if not runs:
        log.warning("no tracking run wrote %s; its evaluation is not logged to MLflow", final_dir)
        return
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if math.isfinite(v)]
    client.log_batch(runs[0].info.run_id, metrics=batch)
