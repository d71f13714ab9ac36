"""Running quality suites: PyDeequ verification per table, freshness clocks, and the history.

One run checks each selected table at its latest Delta version, once: every Deequ constraint of
the suite is evaluated in the same pass over the data. Deequ keeps each table's metrics in a
file-system metrics repository (`{warehouse}/quality/deequ/<table>.json`) and its anomaly
strategies compare this run's row count and means with the previous run's. Every run's results
and metrics are appended to the Delta tables `quality.results` and `quality.metrics`.
"""

from __future__ import annotations

import logging
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType

from lakehouse import io
from lakehouse.config import Config, join_uri
from lakehouse.quality import rules
from lakehouse.quality.rules import (
    AllowedValues,
    Complete,
    Freshness,
    MeanChange,
    NonNegative,
    References,
    RowCountChange,
    Rule,
    Satisfies,
    Unique,
)
from lakehouse.quality.scope import (
    ROW_RULES,
    Scope,
    changed_rows,
    plan_scope,
    record_clean_check,
    unique_key,
)
from lakehouse.quality.suites import Suite
from lakehouse.tables import QUALITY_METRICS_TABLE, QUALITY_RESULTS_TABLE, TABLES_BY_NAME

log = logging.getLogger(__name__)

# Deequ's anomaly constraints fail when the repository holds no earlier run of the table.
_NO_HISTORY = "There have to be previous results in the MetricsRepository"
_EMPTY = "Empty state for analyzer"
# Sample values longer than this are cut: an alert carries evidence, not whole documents.
_SAMPLE_TEXT_CHARS = 200


@dataclass
class CheckResult:
    """How one check came out on one table version."""

    table: str
    layer: str
    table_version: int | None
    suite_version: str
    check: str
    kind: str
    severity: str
    passed: bool
    value: float | None
    message: str
    # Offending rows (only for a failed row-level check), values as short strings.
    samples: list[dict[str, str | None]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "passed" if self.passed else "failed"

    @property
    def blocking(self) -> bool:
        return not self.passed and self.severity == "error"


@dataclass(frozen=True)
class Metric:
    table: str
    table_version: int | None
    entity: str
    instance: str
    name: str
    value: float | None


@dataclass
class QualityRun:
    run_id: str
    run_at: datetime
    results: list[CheckResult] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)

    @property
    def blocking(self) -> list[CheckResult]:
        """Failed checks of severity error: these stop a publish."""
        return [r for r in self.results if r.blocking]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed and r.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.blocking


def run_quality(
    spark: SparkSession,
    config: Config,
    suites: Sequence[Suite],
    now: datetime | None = None,
    record: bool = True,
    progress: Callable[[str], None] = log.info,
) -> QualityRun:
    """Run `suites` and (unless `record` is false) append their results and metrics to the
    quality tables. `now` stands in for the clock (freshness, Deequ's result key); `progress`
    gets one line per table checked."""
    run_at = (now or datetime.now(UTC)).astimezone(UTC)
    run = QualityRun(f"{run_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}", run_at)
    clean: list[tuple[Suite, Scope]] = []
    for number, suite in enumerate(suites, start=1):
        started = time.monotonic()
        narrow = config.quality.changed_rows_only and io.table_exists(spark, config, suite.table)
        scope = plan_scope(spark, config, suite, run_at) if narrow else None
        results, metrics = run_suite(spark, config, suite, run_at, scope)
        run.results.extend(results)
        run.metrics.extend(metrics)
        failed = sum(not r.passed for r in results)
        row_rules = {r.name for r in suite.rules if isinstance(r, (*ROW_RULES, Unique))}
        if scope is not None and all(r.passed for r in results if r.check in row_rules):
            clean.append((suite, scope))
        checked = "" if scope is None else f"; {scope.reason}"
        progress(
            f"[{number}/{len(suites)}] {suite.table.name}: {len(results)} checks, "
            f"{failed} failed ({time.monotonic() - started:.1f} s{checked})"
        )
    if record:
        record_run(spark, config, run)
        # after the results are recorded: a run that dies before leaves the rows to check again
        for suite, scope in clean:
            record_clean_check(spark, config, suite, scope)
    return run


def run_suite(
    spark: SparkSession, config: Config, suite: Suite, now: datetime, scope: Scope | None = None
) -> tuple[list[CheckResult], list[Metric]]:
    """Check one table at its latest version, or at `scope.version` reading what `scope` says:
    every row (None or a full scope), or the rows changed after `scope.after` for the
    row-level rules (lakehouse/quality/scope.py)."""
    table = suite.table

    def result(
        rule: Rule | None,
        passed: bool,
        value: float | None,
        message: str,
        version: int | None = None,
    ) -> CheckResult:
        return CheckResult(
            table=table.name,
            layer=suite.layer,
            table_version=version,
            suite_version=suite.version,
            check="table exists" if rule is None else rule.name,
            kind="existence" if rule is None else rule.kind,
            severity="error" if rule is None else rule.severity,
            passed=passed,
            value=value,
            message=message,
        )

    if not io.table_exists(spark, config, table):
        return [result(None, False, None, f"{table.path(config)} is not a Delta table yet")], []
    version = io.latest_version(spark, config, table) if scope is None else scope.version
    whole = io.read_version(spark, config, table, version)
    full = scope is None or scope.full
    if full:
        frames = {rule.name: whole for rule in suite.rules}
        note = ""
    else:
        frames = _changed_frames(spark, config, suite, whole, scope)
        note = f" [{scope.reason}]"
    # One pass, and one Deequ run, per distinct frame: a full check reads a single frame
    groups: dict[int, tuple[DataFrame, list[Rule]]] = {}
    for rule in suite.rules:
        groups.setdefault(id(frames[rule.name]), (frames[rule.name], []))[1].append(rule)
    judged: list[tuple[DataFrame, list[Rule]]] = []
    for base, group in groups.values():
        frame = base
        for rule in group:
            if isinstance(rule, References):
                frame = _with_reference(spark, config, frame, rule)
        # a full check's one frame is held for the samples and freshness after Deequ's pass
        judged.append((frame.persist() if full else frame, group))
    try:
        outcomes: dict[str, tuple[bool, float | None, str]] = {}
        metrics: list[Metric] = []
        frame_of: dict[str, DataFrame] = {}
        for frame, group in judged:
            deequ_rules = [r for r in group if rules.metric_key(r) is not None]
            found, measured = _verify(spark, config, suite, frame, deequ_rules, version, now)
            outcomes.update(found)
            metrics.extend(measured)
            frame_of.update((r.name, frame) for r in group)
        results = []
        for rule in suite.rules:
            frame = frame_of[rule.name]
            if isinstance(rule, Freshness):
                passed, value, message = _freshness(spark, config, suite, frame, rule, now)
            else:
                passed, value, message = outcomes[rule.name]
            if isinstance(rule, (*ROW_RULES, Unique)):
                message += note
            check = result(rule, passed, value, message, version)
            if not passed:
                check.samples = _samples(frame, rule, config.quality.sample_rows)
            results.append(check)
        return results, metrics
    finally:
        if full:
            for frame, _ in judged:
                frame.unpersist()


def _changed_frames(
    spark: SparkSession, config: Config, suite: Suite, whole: DataFrame, scope: Scope
) -> dict[str, DataFrame]:
    """The frame each rule of the suite is judged on in a changed-rows pass: the changed rows
    (row rules), every row sharing a key with them (uniqueness), the whole table (the rest)."""
    table = suite.table
    assert scope.after is not None
    if scope.after == scope.version:
        changed = spark.createDataFrame([], table.schema)
    else:
        feed = io.read_changes(spark, config, table, scope.after, scope.version)
        if feed is None:
            raise RuntimeError(f"{table.name}: change feed after v{scope.after} vanished")
        # One commit holds one image per key: only a longer range needs the last one picked
        # (a shuffle)
        key = unique_key(suite.rules) if scope.version - scope.after > 1 else ()
        changed = changed_rows(feed, key)
    # The table-wide rules read only the columns they name (a row count reads none)
    needed = sorted(
        {c for r in suite.rules if isinstance(r, MeanChange | Freshness) for c in [r.column] if c}
    )
    table_wide = whole.select(*needed) if needed else whole.select(F.lit(1).alias("_row"))
    frames: dict[str, DataFrame] = {}
    for rule in suite.rules:
        if isinstance(rule, ROW_RULES):
            frames[rule.name] = changed
        elif isinstance(rule, Unique):
            keys = changed.select(*rule.columns).distinct()
            frames[rule.name] = whole.select(*rule.columns).join(
                keys, list(rule.columns), "left_semi"
            )
        else:
            frames[rule.name] = table_wide
    return frames


def _with_reference(
    spark: SparkSession, config: Config, frame: DataFrame, rule: References
) -> DataFrame:
    ref_table = TABLES_BY_NAME[rule.ref_table]
    # Read after the checked table's version was pinned: a reference written before its
    # children (silver.services before plan_services) is never behind them.
    reference = (
        io.read_table(spark, config, ref_table)
        if io.table_exists(spark, config, ref_table)
        else spark.createDataFrame([], ref_table.schema)
    )
    return rules.with_reference_flag(frame, rule, reference)


@contextmanager
def pydeequ_warnings_ignored() -> Iterator[None]:
    """PyDeequ wraps JVM frames with DataFrame's internal constructor, and PySpark warns on each:
    harmless, and noise between a command's own lines."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "DataFrame constructor is internal")
        yield


def _verify(
    spark: SparkSession,
    config: Config,
    suite: Suite,
    frame: DataFrame,
    deequ_rules: list[Rule],
    version: int,
    now: datetime,
) -> tuple[dict[str, tuple[bool, float | None, str]], list[Metric]]:
    """One Deequ verification run: each rule becomes a Check named after it; the metrics are
    saved to the table's repository under this run's time."""
    from pydeequ.checks import Check, CheckLevel
    from pydeequ.repository import FileSystemMetricsRepository, ResultKey
    from pydeequ.verification import VerificationResult, VerificationSuite

    if not deequ_rules:
        return {}, []
    jvm = spark._jvm
    repository = FileSystemMetricsRepository(spark, metrics_repository_path(config, suite))
    key = ResultKey(
        spark,
        int(now.timestamp() * 1000),
        {"table": suite.table.name, "table_version": str(version), "suite": suite.version},
    )
    builder = VerificationSuite(spark).onData(frame).useRepository(repository)
    for rule in deequ_rules:
        level = CheckLevel.Error if rule.severity == "error" else CheckLevel.Warning
        if isinstance(rule, RowCountChange | MeanChange):
            _add_anomaly_check(jvm, builder, rule, level)
        else:
            builder.addCheck(_constraint(Check(spark, level, rule.name), rule))
    with pydeequ_warnings_ignored():
        verification = builder.saveOrAppendResult(key).run()
        metric_rows = VerificationResult.successMetricsAsDataFrame(spark, verification).collect()
        check_rows = VerificationResult.checkResultsAsDataFrame(spark, verification).collect()
    metrics = [
        Metric(suite.table.name, version, m.entity, m.instance, m.name, _number(m.value))
        for m in metric_rows
    ]
    values = {(m.name, m.instance): m.value for m in metrics}
    outcomes = {}
    for row in check_rows:
        rule = next(r for r in deequ_rules if r.name == row.check)
        value = values.get(rules.metric_key(rule))  # type: ignore[arg-type]
        passed = row.constraint_status == "Success"
        if not passed and _NO_HISTORY in (row.constraint_message or ""):
            outcomes[rule.name] = (True, value, "first run: no previous metrics to compare with")
            continue
        if not passed and _EMPTY in (row.constraint_message or ""):
            # No rows (or only nulls) cannot break a row rule; a table emptied overnight is
            # caught by its row-count anomaly check instead.
            outcomes[rule.name] = (True, None, "no values to check")
            continue
        outcomes[rule.name] = (passed, value, _message(rule, passed, value, row.constraint_message))
    return outcomes, metrics


def _constraint(check: Any, rule: Rule) -> Any:
    """The Deequ constraint for a row-level rule. Only constraints whose assertion defaults to
    "all rows" are used: no Python callbacks into the driver."""
    match rule:
        case Complete(column=column):
            return check.isComplete(column)
        case Unique(columns=columns):
            return check.isPrimaryKey(*columns)
        case NonNegative(column=column):
            return check.isNonNegative(column)
        case AllowedValues() | References() | Satisfies():
            return check.satisfies(rule.condition, rule.name)
    raise TypeError(f"no Deequ constraint for {rule!r}")


def _add_anomaly_check(jvm: Any, builder: Any, rule: RowCountChange | MeanChange, level: Any):
    """Deequ's RelativeRateOfChangeStrategy on Size or Mean. PyDeequ cannot pass an
    AnomalyCheckConfig (its level and description), so the JVM call is made here."""
    from pydeequ.analyzers import Mean, Size
    from pydeequ.anomaly_detection import RelativeRateOfChangeStrategy

    if isinstance(rule, RowCountChange):
        strategy = RelativeRateOfChangeStrategy(maxRateDecrease=1.0 - rule.max_drop)
        analyzer: Any = Size()
    else:
        strategy = RelativeRateOfChangeStrategy(
            maxRateDecrease=1.0 - rule.max_change, maxRateIncrease=1.0 + rule.max_change
        )
        analyzer = Mean(rule.column)
    strategy._set_jvm(jvm)
    analyzer._set_jvm(jvm)
    config_object = getattr(jvm.com.amazon.deequ, "AnomalyCheckConfig$").__getattr__("MODULE$")
    check_config = jvm.com.amazon.deequ.AnomalyCheckConfig(
        level._get_java_object(jvm),
        rule.name,
        getattr(config_object, "apply$default$3")(),  # no tag filter: one repository per table
        getattr(config_object, "apply$default$4")(),
        getattr(config_object, "apply$default$5")(),
    )
    builder._VerificationRunBuilder = builder._VerificationRunBuilder.addAnomalyCheck(
        strategy._anomaly_jvm, analyzer._analyzer_jvm, jvm.scala.Option.apply(check_config)
    )


def _message(rule: Rule, passed: bool, value: float | None, deequ_message: str | None) -> str:
    if isinstance(rule, RowCountChange | MeanChange):
        what = "row count" if isinstance(rule, RowCountChange) else f"mean {rule.column}"
        shown = "n/a" if value is None else f"{value:,.4g}"
        if passed:
            return f"{what} {shown}: in line with the previous run"
        return f"{what} {shown}: anomalous change against the previous run (Deequ)"
    if passed:
        return "ok"
    if value is None:
        return deequ_message or "failed"
    if isinstance(rule, Unique):
        return f"{value:.2%} of key values occur once"
    return f"{value:.2%} of rows comply"


def _freshness(
    spark: SparkSession,
    config: Config,
    suite: Suite,
    frame: DataFrame,
    rule: Freshness,
    now: datetime,
) -> tuple[bool, float | None, str]:
    """Age in minutes of the newest data: the newest `rule.column` value, or (gold) the commit
    time of the newest source version the table's watermark names."""
    if rule.column is not None:
        newest = frame.agg(F.max(F.col(rule.column)).cast("double").alias("t")).first()["t"]
        source = f"newest {rule.column}"
    else:
        newest, source = _newest_source_commit(spark, config, suite)
        if newest is None and frame.isEmpty():
            # Delta commits nothing when an empty result replaces an empty table, so a gold
            # table that is legitimately empty carries no watermark: nothing in it can be stale.
            return True, None, f"empty table without a watermark ({source})"
    if newest is None:
        return False, None, f"no data to date ({source})"
    age_minutes = max(0.0, now.timestamp() - float(newest)) / 60.0
    limit = rule.max_age_minutes
    verdict = "within" if age_minutes <= limit else "breaches"
    return (
        age_minutes <= limit,
        age_minutes,
        f"{source} is {age_minutes:,.1f} min old: {verdict} the {limit:g} min SLA",
    )


def _newest_source_commit(
    spark: SparkSession, config: Config, suite: Suite
) -> tuple[float | None, str]:
    from lakehouse.gold.refresh import read_watermark

    watermark = read_watermark(spark, config, suite.table)
    if watermark is None:
        return None, "no watermark: never refreshed"
    commits = {
        name: io.commit_epoch(spark, config, TABLES_BY_NAME[name], version)
        for name, version in watermark.sources.items()
    }
    known = [t for t in commits.values() if t is not None]
    sources = ", ".join(f"{n}@{v}" for n, v in sorted(watermark.sources.items()))
    return (max(known) if known else None), f"newest source commit ({sources})"


def _samples(frame: DataFrame, rule: Rule, limit: int) -> list[dict[str, str | None]]:
    offending = rules.violations(frame, rule)
    if offending is None or limit == 0:
        return []
    offending = offending.select(
        *[
            c
            for c in offending.columns
            if not c.startswith("_ref_")
            and not isinstance(offending.schema[c].dataType, BinaryType)
        ]
    )
    return [
        {k: _short(v) for k, v in row.asDict(recursive=True).items()}
        for row in offending.limit(limit).collect()
    ]


def _short(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= _SAMPLE_TEXT_CHARS else text[:_SAMPLE_TEXT_CHARS] + "…"


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN: Deequ's "no value"


def metrics_repository_path(config: Config, suite: Suite) -> str:
    return join_uri(config.warehouse, "quality", "deequ", f"{suite.table.name}.json")


def record_run(spark: SparkSession, config: Config, run: QualityRun) -> None:
    """Append the run's results and metrics to quality.results and quality.metrics."""
    run_at = run.run_at  # time-zone aware: PySpark converts it exactly
    results = [
        (
            run.run_id,
            run_at,
            r.layer,
            r.table,
            r.table_version,
            r.suite_version,
            r.check,
            r.kind,
            r.severity,
            r.status,
            r.value,
            r.message,
        )
        for r in run.results
    ]
    metrics = [
        (run.run_id, run_at, m.table, m.table_version, m.entity, m.instance, m.name, m.value)
        for m in run.metrics
    ]
    for table, rows in ((QUALITY_RESULTS_TABLE, results), (QUALITY_METRICS_TABLE, metrics)):
        io.ensure_table(spark, config, table)
        io.append(spark.createDataFrame(rows, table.schema), config, table)
