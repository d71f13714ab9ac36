"""The kinds of quality check a suite can declare, and the pure parts of each: which rows break
it (the samples an alert carries) and which Deequ metric it is judged on.

How a check is *run* (PyDeequ, the metrics repository, freshness clocks) is in `runner.py`.
Every check has a severity: `error` blocks publishing, `warning` is only reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Complete:
    """No nulls in `column` (only meaningful for nullable columns: Delta enforces NOT NULL)."""

    column: str
    severity: Severity = "error"
    kind = "completeness"

    @property
    def name(self) -> str:
        return f"complete({self.column})"


@dataclass(frozen=True)
class Unique:
    """No two rows share the key `columns` (the grain of a current-state table)."""

    columns: tuple[str, ...]
    severity: Severity = "error"
    kind = "uniqueness"

    @property
    def name(self) -> str:
        return f"unique({', '.join(self.columns)})"


@dataclass(frozen=True)
class NonNegative:
    """`column` is null or >= 0 (costs)."""

    column: str
    severity: Severity = "error"
    kind = "non_negative"

    @property
    def name(self) -> str:
        return f"non_negative({self.column})"


@dataclass(frozen=True)
class AllowedValues:
    """`column` is null or one of `values`."""

    column: str
    values: tuple[str, ...]
    severity: Severity = "error"
    kind = "allowed_values"

    @property
    def name(self) -> str:
        return f"allowed_values({self.column})"

    @property
    def condition(self) -> str:
        listed = ", ".join("'" + v.replace("'", "''") + "'" for v in self.values)
        return f"{self.column} IS NULL OR {self.column} IN ({listed})"


@dataclass(frozen=True)
class References:
    """Every non-null `column` value exists as `ref_column` in table `ref_table` (a foreign key)."""

    column: str
    ref_table: str
    ref_column: str
    severity: Severity = "error"
    kind = "referential"

    @property
    def name(self) -> str:
        return f"references({self.column} -> {self.ref_table}.{self.ref_column})"

    @property
    def flag(self) -> str:
        """The column `with_reference_flag` adds: the row's value exists in the reference."""
        return f"_ref_{self.column}"

    @property
    def condition(self) -> str:
        return f"{self.column} IS NULL OR {self.flag}"


@dataclass(frozen=True)
class Satisfies:
    """Every row meets a Spark SQL condition (date sanity, invariants between columns). Write
    the condition so that a null it does not care about counts as met."""

    label: str
    condition: str
    severity: Severity = "error"
    kind = "condition"

    @property
    def name(self) -> str:
        return self.label


@dataclass(frozen=True)
class RowCountChange:
    """Deequ anomaly detection on the row count against the previous run in the metrics
    repository: flags a drop by more than `max_drop` (0.5: lost over half its rows)."""

    max_drop: float
    severity: Severity = "warning"
    kind = "row_count_change"

    @property
    def name(self) -> str:
        return f"row_count_change(drop <= {self.max_drop:.0%})"


@dataclass(frozen=True)
class MeanChange:
    """Deequ anomaly detection on the mean of `column` against the previous run: flags a move
    by more than `max_change` either way."""

    column: str
    max_change: float
    severity: Severity = "warning"
    kind = "mean_change"

    @property
    def name(self) -> str:
        return f"mean_change({self.column}, <= {self.max_change:.0%})"


@dataclass(frozen=True)
class Freshness:
    """The newest data is at most `max_age_minutes` old. `column`: the newest value of that
    timestamp column; None (gold): when the source versions the table reflects were committed."""

    max_age_minutes: float
    column: str | None = None
    severity: Severity = "error"
    kind = "freshness"

    @property
    def name(self) -> str:
        return f"freshness(<= {self.max_age_minutes:g} min)"


Rule = (
    Complete
    | Unique
    | NonNegative
    | AllowedValues
    | References
    | Satisfies
    | RowCountChange
    | MeanChange
    | Freshness
)


def metric_key(rule: Rule) -> tuple[str, str] | None:
    """The (metric name, instance) of the Deequ metric the rule is judged on; None for the
    checks computed outside Deequ (freshness)."""
    match rule:
        case Complete(column=column):
            return ("Completeness", column)
        case Unique(columns=columns):
            return ("Uniqueness", ",".join(columns))
        case NonNegative(column=column):
            return ("Compliance", f"{column} is non-negative")
        case AllowedValues() | References() | Satisfies():
            return ("Compliance", rule.name)
        case RowCountChange():
            return ("Size", "*")
        case MeanChange(column=column):
            return ("Mean", column)
    return None


def with_reference_flag(frame: DataFrame, rule: References, reference: DataFrame) -> DataFrame:
    """`frame` plus boolean column `rule.flag`: whether the row's `rule.column` value occurs in
    `reference`'s `rule.ref_column`. Row count and order of `frame` are kept."""
    keys = (
        reference.select(F.col(rule.ref_column).alias("_ref_key"))
        .where(F.col("_ref_key").isNotNull())
        .distinct()
        .withColumn(rule.flag, F.lit(True))
    )
    joined = frame.join(keys, frame[rule.column] == keys["_ref_key"], "left")
    return joined.drop("_ref_key").withColumn(rule.flag, F.coalesce(F.col(rule.flag), F.lit(False)))


def violations(frame: DataFrame, rule: Rule) -> DataFrame | None:
    """The rows of `frame` that break `rule` (for a referential rule, `frame` must carry its
    flag column); None when the rule is about the table as a whole (anomalies, freshness)."""
    match rule:
        case Complete(column=column):
            return frame.where(F.col(column).isNull())
        case Unique(columns=columns):
            by_key = Window.partitionBy(*columns)
            return (
                frame.withColumn("_key_rows", F.count(F.lit(1)).over(by_key))
                .where(F.col("_key_rows") > 1)
                .drop("_key_rows")
            )
        case NonNegative(column=column):
            return frame.where(F.col(column) < 0)
        case AllowedValues() | References() | Satisfies():
            return frame.where(~_met(F.expr(rule.condition)))
    return None


def _met(condition: Column) -> Column:
    """Deequ counts a condition that evaluates to null as not met; so do the samples."""
    return F.coalesce(condition, F.lit(False))
