"""Plan anomaly detection: a robust statistical baseline and an MLlib model (KMeans + CBLOF).

- Baseline: robust z-scores (median and MAD within the plan type) of each log cost; a plan is
  flagged when its largest z exceeds `rule_z_threshold` (Iglewicz and Hoaglin's 3.5). One-sided:
  it looks for costs that are too high; a $0 deductible or copay is a normal plan design.
- Model: standardised cost and shape features, KMeans; a plan's score is its distance to the
  nearest *large* cluster centre (cluster-based local outlier factor), so a tight group of odd
  plans that earns its own small cluster still scores as far from every normal group. The
  threshold is the training scores' (1 - contamination) quantile.

Both detectors are fitted once by the training job and frozen (the medians and MADs travel with
the model in MLflow), so scoring a plan depends only on the plan and the model version: an
incremental run that rescores changed plans agrees with a full rescore.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pyspark.ml import Pipeline
from pyspark.ml.clustering import KMeans
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from lakehouse.plans.generator import anomaly_label

# Costs the baseline scores, as log(1 + dollars / _COST_UNIT): costs are roughly log-normal, and
# the unit keeps the many $0 costs (platinum deductibles, no plan copay) from looking like
# outliers on a plain log1p scale, where $0 sits as far below $3,000 as $250,000 sits above.
COST_FEATURES = (
    "log_plan_deductible",
    "log_plan_copay",
    "log_services_copay",
    "log_max_service_copay",
    "log_total_cost",
)
# The model also sees the copay above the deductible and repeated services. (The number of
# services made clusters less stable across seeds without adding recall: left out.)
MODEL_FEATURES = (*COST_FEATURES, "log_copay_excess", "repeated_services")
_COST_UNIT = 100.0
ALL_PLAN_TYPES = "*"
# Modified z-score constants (Iglewicz and Hoaglin; IBM's MeanAD fallback when MAD is 0).
_MAD_SCALE = 1.4826
_MEAN_AD_SCALE = 1.253314
# |z| given to a value that differs from a distribution with no spread at all.
_UNBOUNDED_Z = 1000.0


def _log_cost(dollars: Column) -> Column:
    return F.log1p(F.greatest(F.coalesce(dollars, F.lit(0.0)), F.lit(0.0)) / _COST_UNIT)


def anomaly_features(plan_costs: DataFrame) -> DataFrame:
    """gold.plan_costs -> plan_id, plan_version, plan_type, org and the MODEL_FEATURES: each cost
    on the log scale above (a missing cost counts as 0), the plan copay above its deductible on
    the same scale, and the number of repeated service links."""
    return plan_costs.select(
        "plan_id",
        "plan_version",
        "plan_type",
        "org",
        _log_cost(F.col("plan_deductible")).alias("log_plan_deductible"),
        _log_cost(F.col("plan_copay")).alias("log_plan_copay"),
        _log_cost(F.col("services_copay")).alias("log_services_copay"),
        _log_cost(F.col("max_service_copay")).alias("log_max_service_copay"),
        _log_cost(F.col("total_cost")).alias("log_total_cost"),
        _log_cost(
            F.coalesce(F.col("plan_copay"), F.lit(0.0))
            - F.coalesce(F.col("plan_deductible"), F.lit(0.0))
        ).alias("log_copay_excess"),
        (F.col("service_count") - F.col("distinct_service_count"))
        .cast("double")
        .alias("repeated_services"),
    )


def _long_costs(features: DataFrame) -> DataFrame:
    """Features -> plan_id, plan_type, feature, value: one row per plan and cost feature."""
    pairs = ", ".join(f"'{name}', {name}" for name in COST_FEATURES)
    return features.select(
        "plan_id",
        "plan_type",
        F.expr(f"stack({len(COST_FEATURES)}, {pairs}) AS (feature, value)"),
    )


def robust_stats(features: DataFrame) -> DataFrame:
    """`anomaly_features` rows -> plan_type, feature, median, mad, mean_ad: per plan type (and
    for ALL_PLAN_TYPES, used for a plan type training never saw) and cost feature."""
    long = _long_costs(features)
    long = long.unionByName(long.withColumn("plan_type", F.lit(ALL_PLAN_TYPES)))
    medians = long.groupBy("plan_type", "feature").agg(
        F.expr("percentile(value, 0.5)").alias("median")
    )
    deviations = long.join(medians, ["plan_type", "feature"]).withColumn(
        "_dev", F.abs(F.col("value") - F.col("median"))
    )
    return deviations.groupBy("plan_type", "feature", "median").agg(
        F.expr("percentile(_dev, 0.5)").alias("mad"),
        F.avg("_dev").alias("mean_ad"),
    )


def robust_scores(features: DataFrame, stats: DataFrame, threshold: float) -> DataFrame:
    """`anomaly_features` rows + `robust_stats` -> plan_id, rule_score (largest modified z of
    the plan's costs within its plan type; above the median is positive), rule_feature (which
    cost), rule_flagged."""
    long = _long_costs(features)
    known = stats.select("plan_type").distinct().withColumn("_known", F.lit(True))
    keyed = long.join(known, "plan_type", "left").withColumn(
        "_stats_type",
        F.when(F.col("_known"), F.col("plan_type")).otherwise(F.lit(ALL_PLAN_TYPES)),
    )
    s = stats.withColumnRenamed("plan_type", "_stats_type")
    scored = keyed.join(s, ["_stats_type", "feature"], "left")
    deviation = F.col("value") - F.col("median")
    scale = F.when(F.col("mad") > 0, F.col("mad") * _MAD_SCALE).when(
        F.col("mean_ad") > 0, F.col("mean_ad") * _MEAN_AD_SCALE
    )
    z = F.when(scale.isNotNull(), deviation / scale).otherwise(
        F.signum(deviation) * F.lit(_UNBOUNDED_Z)
    )
    bounded = F.greatest(F.least(z, F.lit(_UNBOUNDED_Z)), F.lit(-_UNBOUNDED_Z))
    per_plan = scored.withColumn("_z", bounded).groupBy("plan_id")
    return per_plan.agg(
        F.round(F.max("_z"), 4).alias("rule_score"),
        F.max_by("feature", F.struct(F.col("_z"), F.col("feature"))).alias("rule_feature"),
    ).withColumn("rule_flagged", F.col("rule_score") > F.lit(threshold))


def kmeans_pipeline(k: int, seed: int) -> Pipeline:
    """Unfitted MODEL_FEATURES -> "features" (standardised) -> KMeans cluster "cluster"."""
    return Pipeline(
        stages=[
            VectorAssembler(inputCols=list(MODEL_FEATURES), outputCol="raw_features"),
            StandardScaler(
                inputCol="raw_features", outputCol="features", withMean=True, withStd=True
            ),
            KMeans(k=k, seed=seed, featuresCol="features", predictionCol="cluster"),
        ]
    )


def large_clusters(clustered: DataFrame, small_share: float) -> list[int]:
    """Clustered training rows -> the clusters holding at least `small_share` of them (at
    least the biggest one: some cluster must stand for normal plans)."""
    sizes = clustered.groupBy("cluster").count().collect()
    total = sum(row["count"] for row in sizes)
    large = [row["cluster"] for row in sizes if row["count"] >= small_share * total]
    if not large and sizes:
        large = [max(sizes, key=lambda row: row["count"])["cluster"]]
    return sorted(large)


def cblof_distance(clustered: DataFrame, centers: list[list[float]]) -> DataFrame:
    """Rows with a standardised "features" vector + the large clusters' centres -> the same rows
    plus `distance`: Euclidean distance to the nearest of those centres."""
    if not centers:
        raise ValueError("cblof_distance needs at least one cluster centre")
    values = vector_to_array("features")

    def to_center(center: list[float]) -> Column:
        squares = F.zip_with(
            values,
            F.array(*(F.lit(float(c)) for c in center)),
            lambda x, c: (x - c) * (x - c),
        )
        return F.sqrt(F.aggregate(squares, F.lit(0.0), lambda acc, v: acc + v))

    distances = [to_center(center) for center in centers]
    nearest = distances[0] if len(distances) == 1 else F.least(*distances)
    return clustered.withColumn("distance", nearest)


@dataclass(frozen=True)
class Detector:
    """Everything scoring needs besides the fitted Spark pipeline (stored in MLflow with it)."""

    large_centers: list[list[float]]
    distance_threshold: float
    rule_z_threshold: float
    robust_stats: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Detector:
        return cls(
            large_centers=[[float(x) for x in c] for c in data["large_centers"]],
            distance_threshold=float(data["distance_threshold"]),
            rule_z_threshold=float(data["rule_z_threshold"]),
            robust_stats=list(data["robust_stats"]),
        )


def model_scores(clustered: DataFrame, detector: Detector) -> DataFrame:
    """Pipeline output (plan_id, features) -> plan_id, model_score (distance to the nearest large
    centre over the threshold: above 1 is flagged), model_flagged."""
    with_distance = cblof_distance(clustered, detector.large_centers)
    score = F.col("distance") / F.lit(detector.distance_threshold)
    return with_distance.select(
        "plan_id",
        F.round(score, 4).alias("model_score"),
        (score > 1.0).alias("model_flagged"),
    )


def to_plan_anomalies(
    features: DataFrame,
    rule: DataFrame,
    model: DataFrame,
    model_name: str,
    model_version: str,
    scored_at: Column,
) -> DataFrame:
    """Features + `robust_scores` + `model_scores` -> gold.plan_anomalies rows."""
    both = features.select("plan_id", "plan_version", "plan_type", "org").join(
        rule, "plan_id", "left"
    )
    both = both.join(model, "plan_id", "left")
    rule_flag = F.coalesce(F.col("rule_flagged"), F.lit(False))
    model_flag = F.coalesce(F.col("model_flagged"), F.lit(False))
    return both.select(
        "plan_id",
        "plan_version",
        "plan_type",
        "org",
        "rule_score",
        "rule_feature",
        rule_flag.alias("rule_flagged"),
        "model_score",
        model_flag.alias("model_flagged"),
        (rule_flag | model_flag).alias("is_anomaly"),
        F.when(rule_flag & model_flag, F.lit("rule+model"))
        .when(rule_flag, F.lit("rule"))
        .when(model_flag, F.lit("model"))
        .alias("flagged_by"),
        F.lit(model_name).alias("model_name"),
        F.lit(model_version).alias("model_version"),
        scored_at.alias("scored_at"),
    )


# ----------------------------------------------------------------------------------- evaluation

LABEL = StructType(
    [StructField("plan_id", StringType(), False), StructField("anomaly", StringType(), True)]
)


def _label_or_unlabelled(plan_id: str, rate: float) -> str | None:
    try:
        return anomaly_label(plan_id, rate) or "none"
    except ValueError:
        return None  # not a generated plan: it has no label


def generator_labels(plan_ids: DataFrame, anomaly_rate: float) -> DataFrame:
    """plan_id rows -> plan_id, anomaly: the generator's label ("none" for a normal plan), for
    the plans the generator made (other ids are left out: they have no label)."""
    label = F.udf(lambda plan_id: _label_or_unlabelled(plan_id, anomaly_rate), StringType())
    return (
        plan_ids.select("plan_id")
        .withColumn("anomaly", label("plan_id"))
        .where(F.col("anomaly").isNotNull())
    )


def confusion(flags: DataFrame, labels: DataFrame, flag_column: str) -> DataFrame:
    """Flags (plan_id, <flag_column>) + `generator_labels` -> one row: tp, fp, fn, tn over the
    labelled plans."""
    joined = flags.join(labels, "plan_id")
    actual = F.col("anomaly") != "none"
    flagged = F.col(flag_column)

    def count(condition: Column) -> Column:
        return F.coalesce(F.sum(F.when(condition, 1).otherwise(0)), F.lit(0)).cast("long")

    return joined.agg(
        count(flagged & actual).alias("tp"),
        count(flagged & ~actual).alias("fp"),
        count(~flagged & actual).alias("fn"),
        count(~flagged & ~actual).alias("tn"),
    )


def recall_by_kind(flags: DataFrame, labels: DataFrame, flag_column: str) -> DataFrame:
    """Flags + labels -> anomaly kind, plans, flagged, recall (anomalous kinds only)."""
    joined = flags.join(labels.where(F.col("anomaly") != "none"), "plan_id")
    return joined.groupBy("anomaly").agg(
        F.count("*").alias("plans"),
        F.sum(F.col(flag_column).cast("int")).alias("flagged"),
        F.round(F.avg(F.col(flag_column).cast("double")), 4).alias("recall"),
    )


def precision_recall_f1(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
