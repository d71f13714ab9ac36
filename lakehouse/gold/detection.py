"""Training, registering and scoring the plan anomaly detectors with MLflow.

- `train`: fits both detectors on gold.plan_costs, evaluates them (and the current champion) on
  the generator's labels, logs parameters, metrics, the Spark model and the frozen baseline
  statistics to one MLflow run, registers the model, and moves the serving alias to the new
  version only if its F1 beats the champion's on the same plans.
- `refresh_plan_anomalies`: loads the model by alias from the registry (never from a path) and
  scores changed plans into gold.plan_anomalies; a new model version rescores every plan.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import io
from lakehouse.config import Config
from lakehouse.gold import anomaly
from lakehouse.gold.refresh import (
    GoldError,
    Refresh,
    Watermark,
    begin_refresh,
    collect_plan_ids,
    current_version,
    finished,
    keys_frame,
    overwrite,
    replace_rows,
    stamped,
    unless_cheaper_to_rebuild,
    with_keys,
)
from lakehouse.tables import PLAN_ANOMALIES, PLAN_COSTS

log = logging.getLogger(__name__)

_DETECTOR_FILE = "detector.json"
# Fewer plans than this per cluster and KMeans has nothing meaningful to fit.
_MIN_PLANS_PER_CLUSTER = 5


def tracking_uri(config: Config) -> str:
    """The configured tracking URI, else a SQLite registry under <state_dir>/mlflow."""
    if config.gold.mlflow_tracking_uri:
        return config.gold.mlflow_tracking_uri
    folder = config.state_path / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder.resolve()}/mlflow.db"


def artifact_location(uri: str) -> str | None:
    """Artifacts next to a SQLite registry; a tracking server decides for itself."""
    if not uri.startswith("sqlite:///"):
        return None
    folder = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve().as_uri()


def _mlflow(config: Config):  # type: ignore[no-untyped-def]
    """The mlflow module pointed at the configured registry, and a client for it."""
    import mlflow
    from mlflow import MlflowClient

    # Its INFO lines (DFS copies, table migrations) say nothing an operator can act on.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    uri = tracking_uri(config)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow, MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(config: Config) -> str:
    mlflow, client = _mlflow(config)
    name = config.gold.mlflow_experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_location(tracking_uri(config))
    return client.create_experiment(name, artifact_location=location)


@dataclass(frozen=True)
class ServingModel:
    version: str
    pipeline: PipelineModel
    detector: anomaly.Detector


def serving_version(config: Config):  # type: ignore[no-untyped-def]
    """The registry's ModelVersion behind `model_name@model_alias` (None: no such alias)."""
    _, client = _mlflow(config)
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(config.gold.model_name, config.gold.model_alias)
    except MlflowException:
        return None


def load_serving_model(config: Config) -> ServingModel | None:
    """The model version behind `model_name@model_alias`, from the registry (None: no alias)."""
    version = serving_version(config)
    return None if version is None else load_model_version(config, version)


def load_model_version(config: Config, version) -> ServingModel:  # type: ignore[no-untyped-def]
    """A registered version (as the alias resolved it) and its run's detector.json, both from
    the registry: the version the alias named, even if the alias moves meanwhile."""
    mlflow, _ = _mlflow(config)
    pipeline = mlflow.spark.load_model(f"models:/{config.gold.model_name}/{version.version}")
    detector = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{_DETECTOR_FILE}")
    return ServingModel(str(version.version), pipeline, anomaly.Detector.from_json(detector))


def score(
    spark: SparkSession, features: DataFrame, pipeline: PipelineModel, detector: anomaly.Detector
) -> tuple[DataFrame, DataFrame]:
    """`anomaly_features` rows -> (robust_scores rows, model_scores rows)."""
    stats = spark.createDataFrame(
        detector.robust_stats,
        "plan_type string, feature string, median double, mad double, " "mean_ad double",
    )
    rule = anomaly.robust_scores(features, stats, detector.rule_z_threshold)
    model = anomaly.model_scores(pipeline.transform(features), detector)
    return rule, model


@dataclass
class Evaluation:
    metrics: dict[str, float] = field(default_factory=dict)
    labelled_plans: int = 0


def evaluate(rule: DataFrame, model: DataFrame, labels: DataFrame) -> Evaluation:
    """Precision, recall and F1 of both detectors, and each one's recall per anomaly kind."""
    result = Evaluation(labelled_plans=labels.count())
    for prefix, flags, column in (
        ("rule", rule, "rule_flagged"),
        ("model", model, "model_flagged"),
    ):
        counts = anomaly.confusion(flags, labels, column).first()
        assert counts is not None
        scores = anomaly.precision_recall_f1(counts["tp"], counts["fp"], counts["fn"])
        result.metrics.update({f"{prefix}_{name}": value for name, value in scores.items()})
        result.metrics.update({f"{prefix}_{k}": float(counts[k]) for k in ("tp", "fp", "fn")})
        for row in anomaly.recall_by_kind(flags, labels, column).collect():
            result.metrics[f"{prefix}_recall_{row['anomaly']}"] = float(row["recall"])
    return result


@dataclass
class TrainResult:
    run_id: str
    model_version: str
    promoted: bool
    evaluation: Evaluation
    champion_f1: float | None
    plans: int

    def render(self, config: Config) -> str:
        m = self.evaluation.metrics
        lines = [
            f"trained on {self.plans} plans ({self.evaluation.labelled_plans} labelled), "
            f"MLflow run {self.run_id}",
        ]
        for prefix, title in (("model", "kmeans+cblof"), ("rule", "robust z   ")):
            if f"{prefix}_f1" in m:
                lines.append(
                    f"  {title}: precision {m[f'{prefix}_precision']:.3f}  "
                    f"recall {m[f'{prefix}_recall']:.3f}  F1 {m[f'{prefix}_f1']:.3f}"
                )
        name = f"{config.gold.model_name} v{self.model_version}"
        if self.promoted:
            lines.append(f"  registered {name} as @{config.gold.model_alias}")
        else:
            lines.append(
                f"  registered {name}; @{config.gold.model_alias} stays (champion F1 "
                f"{self.champion_f1:.3f} is not beaten)"
            )
        return "\n".join(lines)


def train(spark: SparkSession, config: Config) -> TrainResult:
    """Fit, evaluate, log and register; promote to the alias only if F1 beats the champion."""
    gold = config.gold
    mlflow, client = _mlflow(config)
    experiment_id = _experiment_id(config)
    features = anomaly.anomaly_features(io.read_table(spark, config, PLAN_COSTS)).persist()
    try:
        plans = features.count()
        if plans < gold.kmeans_k * _MIN_PLANS_PER_CLUSTER:
            raise GoldError(
                f"gold.plan_costs holds {plans} plans; training {gold.kmeans_k} clusters needs "
                f"at least {gold.kmeans_k * _MIN_PLANS_PER_CLUSTER} (lower gold.kmeans_k or load "
                "more plans)"
            )
        pipeline = anomaly.kmeans_pipeline(gold.kmeans_k, gold.seed).fit(features)
        clustered = pipeline.transform(features).persist()
        large = anomaly.large_clusters(clustered, gold.small_cluster_share)
        all_centers = pipeline.stages[-1].clusterCenters()  # type: ignore[attr-defined]
        centers = [[float(x) for x in all_centers[i]] for i in large]
        distances = anomaly.cblof_distance(clustered, centers)
        threshold = distances.agg(
            F.expr(f"percentile(distance, {1.0 - gold.contamination})")
        ).first()[0]
        clustered.unpersist()
        stats = [row.asDict() for row in anomaly.robust_stats(features).collect()]
        detector = anomaly.Detector(
            large_centers=centers,
            # A zero threshold (most plans identical) would flag every plan that differs at all.
            distance_threshold=max(float(threshold or 0.0), 1e-9),
            rule_z_threshold=gold.rule_z_threshold,
            robust_stats=stats,
        )
        labels = anomaly.generator_labels(features, gold.label_anomaly_rate).persist()
        try:
            evaluation = evaluate(*score(spark, features, pipeline, detector), labels)
            champion = load_serving_model(config)
            champion_f1 = None
            if champion is not None:
                champion_eval = evaluate(
                    *score(spark, features, champion.pipeline, champion.detector), labels
                )
                champion_f1 = champion_eval.metrics.get("model_f1", 0.0)
        finally:
            labels.unpersist()

        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_params(
                {
                    "kmeans_k": gold.kmeans_k,
                    "seed": gold.seed,
                    "contamination": gold.contamination,
                    "small_cluster_share": gold.small_cluster_share,
                    "rule_z_threshold": gold.rule_z_threshold,
                    "label_anomaly_rate": gold.label_anomaly_rate,
                    "features": ",".join(anomaly.MODEL_FEATURES),
                    "large_clusters": len(large),
                }
            )
            metrics: dict[str, Any] = dict(evaluation.metrics)
            metrics.update(
                plans=plans,
                labelled_plans=evaluation.labelled_plans,
                distance_threshold=detector.distance_threshold,
            )
            if champion_f1 is not None:
                metrics["champion_f1"] = champion_f1
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            mlflow.log_dict(detector.to_json(), _DETECTOR_FILE)
            info = mlflow.spark.log_model(
                pipeline, artifact_path="model", pip_requirements=["pyspark==3.5.7"]
            )
        registered = mlflow.register_model(info.model_uri, gold.model_name)
        version = str(registered.version)
        f1 = evaluation.metrics.get("model_f1", 0.0)
        promoted = champion_f1 is None or (evaluation.labelled_plans > 0 and f1 > champion_f1)
        client.set_model_version_tag(gold.model_name, version, "model_f1", f"{f1:.4f}")
        client.set_model_version_tag(gold.model_name, version, "promoted", str(promoted).lower())
        if promoted:
            client.set_registered_model_alias(gold.model_name, gold.model_alias, version)
        return TrainResult(run.info.run_id, version, promoted, evaluation, champion_f1, plans)
    finally:
        features.unpersist()


def refresh_plan_anomalies(spark: SparkSession, config: Config, full: bool = False) -> Refresh:
    """gold.plan_anomalies: score the plans whose gold.plan_costs row changed with the serving
    model; everything when the serving model version moved (or with `full`)."""
    started = time.monotonic()
    gold = config.gold
    serving_model_version = serving_version(config)
    if serving_model_version is None:
        raise GoldError(
            f"no model is registered as {gold.model_name}@{gold.model_alias} in "
            f"{tracking_uri(config)}: run `lakehouse jobs run anomaly_detection --mode train` first"
        )
    version = current_version(spark, config, PLAN_COSTS)
    sources = {PLAN_COSTS.name: version}
    model_version = str(serving_model_version.version)
    result, mark = begin_refresh(spark, config, PLAN_ANOMALIES, sources, full, model_version)
    if result.mode == "up-to-date":
        return result
    plan_costs = io.read_version(spark, config, PLAN_COSTS, version)
    changed = None
    if mark is not None:
        feed = io.read_changes(spark, config, PLAN_COSTS, mark.sources[PLAN_COSTS.name], version)
        changed = None if feed is None else collect_plan_ids(feed, config)
    changed = unless_cheaper_to_rebuild(spark, config, PLAN_ANOMALIES, result, changed)
    keys = None
    if changed is not None:
        keys = keys_frame(spark, "plan_id", changed)
        plan_costs = with_keys(plan_costs, keys)
        result.keys_changed = len(changed)
    serving = load_model_version(config, serving_model_version)
    features = anomaly.anomaly_features(plan_costs)
    rule, model = score(spark, features, serving.pipeline, serving.detector)
    rows = anomaly.to_plan_anomalies(
        features, rule, model, gold.model_name, model_version, F.current_timestamp()
    )
    watermark = Watermark(sources, model_version)
    if keys is None:
        result.mode = "full"
        overwrite(rows, config, PLAN_ANOMALIES, watermark)
    else:
        target = io.delta_table(spark, config, PLAN_ANOMALIES)
        columns = PLAN_ANOMALIES.schema.fieldNames()
        with stamped(spark, watermark):
            replace_rows(target, rows, keys, ["plan_id"], columns, ignore=["scored_at"])
    return finished(spark, config, PLAN_ANOMALIES, result, started)
