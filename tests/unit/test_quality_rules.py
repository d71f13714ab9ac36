"""The pure parts of the quality framework: offending-row selection per rule kind, reference
flags, suite selection and versions, history summaries, console tables and alert delivery."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from frames import assert_frames_equal

from lakehouse.config import Config
from lakehouse.quality import report, rules, suites
from lakehouse.quality.alerts import Alert, FailedCheck, dispatch
from lakehouse.quality.profile import ColumnSummary, TableProfile, render_html
from lakehouse.quality.rules import (
    AllowedValues,
    Complete,
    Freshness,
    MeanChange,
    NonNegative,
    References,
    RowCountChange,
    Satisfies,
    Unique,
)
from lakehouse.quality.runner import CheckResult
from lakehouse.tables import QUALITY_RESULTS

ITEMS = "id string, kind string, cost double, parent string"
ROWS = [
    ("a", "x", 1.0, "p1"),
    ("b", None, -2.0, "p2"),
    ("b", "y", None, None),
    ("c", "z", 0.0, "p9"),
]


@pytest.fixture(scope="module")
def items(spark):
    return spark.createDataFrame(ROWS, ITEMS)


@pytest.mark.parametrize(
    ("rule", "offending"),
    [
        (Complete("kind"), [("b", None, -2.0, "p2")]),
        (Unique(("id",)), [("b", None, -2.0, "p2"), ("b", "y", None, None)]),
        # a null cost is not negative
        (NonNegative("cost"), [("b", None, -2.0, "p2")]),
        # null is allowed; "z" is not
        (AllowedValues("kind", ("x", "y")), [("c", "z", 0.0, "p9")]),
        # a condition that is null for a row counts as broken (Deequ does the same)
        (Satisfies("cost positive", "cost > 0"), [r for r in ROWS if r[2] is None or r[2] <= 0]),
    ],
    ids=lambda value: getattr(value, "kind", ""),
)
def test_violations_select_exactly_the_offending_rows(spark, items, rule, offending) -> None:
    assert_frames_equal(rules.violations(items, rule), spark.createDataFrame(offending, ITEMS))


def test_no_violations_on_empty_input(spark) -> None:
    empty = spark.createDataFrame([], ITEMS)
    for rule in (Complete("kind"), Unique(("id",)), NonNegative("cost")):
        assert_frames_equal(rules.violations(empty, rule), empty)


def test_reference_flag_marks_values_missing_from_the_reference(spark, items) -> None:
    # the reference has a duplicate and a null key: neither may duplicate or match rows
    reference = spark.createDataFrame([("p1",), ("p1",), ("p2",), (None,)], "service_id string")
    rule = References("parent", "silver.services", "service_id")
    flagged = rules.with_reference_flag(items, rule, reference)
    expected = spark.createDataFrame(
        [(*row, row[3] in ("p1", "p2")) for row in ROWS], f"{ITEMS}, _ref_parent boolean"
    )
    assert_frames_equal(flagged, expected)
    # a null parent is not a broken reference; p9 is
    assert_frames_equal(
        rules.violations(flagged, rule),
        spark.createDataFrame([("c", "z", 0.0, "p9", False)], f"{ITEMS}, _ref_parent boolean"),
    )


def test_table_level_rules_have_no_offending_rows(items) -> None:
    for rule in (RowCountChange(0.5), MeanChange("cost", 0.5), Freshness(60.0, "ts")):
        assert rules.violations(items, rule) is None


def test_each_deequ_rule_names_the_metric_it_is_judged_on() -> None:
    assert [
        rules.metric_key(r)
        for r in (
            Complete("kind"),
            Unique(("a", "b")),
            NonNegative("cost"),
            AllowedValues("kind", ("x",)),
            RowCountChange(0.5),
            MeanChange("cost", 0.5),
            Freshness(1.0),
        )
    ] == [
        ("Completeness", "kind"),
        ("Uniqueness", "a,b"),
        ("Compliance", "cost is non-negative"),
        ("Compliance", "allowed_values(kind)"),
        ("Size", "*"),
        ("Mean", "cost"),
        None,
    ]


def test_allowed_values_condition_quotes_values() -> None:
    rule = AllowedValues("kind", ("a", "o'brien"))
    assert rule.condition == "kind IS NULL OR kind IN ('a', 'o''brien')"


def test_suite_version_follows_its_thresholds(config: Config) -> None:
    before = {s.table.name: s.version for s in suites.suites(config)}
    stricter = dataclasses.replace(
        config, quality=dataclasses.replace(config.quality, row_count_max_drop=0.2)
    )
    after = {s.table.name: s.version for s in suites.suites(stricter)}
    changed = sorted(name for name in before if before[name] != after[name])
    # exactly the suites with a row-count rule
    assert changed == [
        "bronze.plan_events",
        "gold.plan_costs",
        "silver.plan_services",
        "silver.plans",
    ]
    assert {s.table.name: s.version for s in suites.suites(config)} == before


def test_select_by_layer_and_table(config: Config) -> None:
    assert [s.table.name for s in suites.select(config, layer="bronze")] == [
        "bronze.plan_events",
        "bronze.plan_snapshots",
    ]
    assert [s.table.name for s in suites.select(config, table="gold.plan_costs")] == [
        "gold.plan_costs"
    ]
    with pytest.raises(ValueError, match="known layers: bronze, silver, gold"):
        suites.select(config, layer="platinum")
    with pytest.raises(ValueError, match="no quality suite for table 'gold.plan_costs'"):
        suites.select(config, layer="silver", table="gold.plan_costs")


def test_every_current_state_table_has_a_key_rule(config: Config) -> None:
    keyed = {
        s.table.name for s in suites.suites(config) if any(isinstance(r, Unique) for r in s.rules)
    }
    assert {
        "silver.plans",
        "silver.plan_services",
        "silver.services",
        "gold.plan_costs",
        "gold.service_patterns",
        "gold.plan_anomalies",
    } <= keyed


def _result_row(run: str, minute: int, table: str, severity: str, status: str) -> tuple:
    at = datetime(2026, 11, 26, 2, minute, tzinfo=UTC)
    return (
        run,
        at,
        "gold",
        table,
        3,
        "v1",
        f"check-{severity}",
        "condition",
        severity,
        status,
        1.0,
        "m",
    )


def test_run_history_counts_failures_per_run_newest_first(spark) -> None:
    results = spark.createDataFrame(
        [
            _result_row("r1", 0, "gold.a", "error", "passed"),
            _result_row("r1", 0, "gold.b", "error", "failed"),
            _result_row("r1", 0, "gold.b", "warning", "failed"),
            _result_row("r2", 5, "gold.a", "error", "passed"),
            _result_row("r2", 5, "gold.a", "warning", "passed"),
        ],
        QUALITY_RESULTS,
    )
    expected = spark.createDataFrame(
        [
            ("r2", datetime(2026, 11, 26, 2, 5, tzinfo=UTC), 1, 2, 0, 0),
            ("r1", datetime(2026, 11, 26, 2, 0, tzinfo=UTC), 2, 3, 1, 1),
        ],
        "run_id string, run_at timestamp, tables long, checks long, errors long, warnings long",
    )
    history = report.run_history(results)
    assert_frames_equal(history, expected)
    assert [r.run_id for r in history.collect()] == ["r2", "r1"]


def test_latest_per_table_keeps_each_tables_newest_run(spark) -> None:
    rows = [
        _result_row("r1", 0, "gold.a", "error", "failed"),
        _result_row("r1", 0, "gold.b", "error", "failed"),
        # a later run of gold.a only (lakehouse quality run --table gold.a)
        _result_row("r2", 5, "gold.a", "error", "passed"),
    ]
    results = spark.createDataFrame(rows, QUALITY_RESULTS)
    assert_frames_equal(
        report.latest_per_table(results), spark.createDataFrame(rows[1:], QUALITY_RESULTS)
    )


def _check(table: str, check: str, severity: str, passed: bool, value: float | None) -> CheckResult:
    return CheckResult(table, "gold", 4, "v1", check, "condition", severity, passed, value, "why")


def test_console_table_and_summary() -> None:
    results = [
        _check("gold.plan_costs", "unique(plan_id)", "error", True, 1.0),
        _check("gold.plan_costs", "non_negative(total_cost)", "error", False, 0.75),
        _check("gold.cost_trends", "median <= p90", "warning", False, None),
    ]
    assert report.format_results(results).splitlines() == [
        "table             check                     severity  status  value  message",
        "----------------  ------------------------  --------  ------  -----  -------",
        "gold.plan_costs   unique(plan_id)           error     ok      1      why",
        "gold.plan_costs   non_negative(total_cost)  error     FAIL    0.75   why",
        "gold.cost_trends  median <= p90             warning   warn           why",
    ]
    assert report.summary_line(results) == (
        "quality FAILED: 2 tables, 3 checks, 1 passed, 1 error(s), 1 warning(s)"
    )


def _alert() -> Alert:
    failed = FailedCheck(
        "gold.plan_costs",
        "non_negative(total_cost)",
        "error",
        0.5,
        "50.00% of rows comply",
        7,
        [{"plan_id": "p1", "total_cost": "-5.0"}],
    )
    return Alert("quality gate failed", "run-1", "2026-11-26T02:00:00+00:00", [failed])


def test_alert_payloads_carry_checks_and_samples() -> None:
    alert = _alert()
    body = json.loads(alert.to_json())
    assert body["failed"][0]["samples"] == [{"plan_id": "p1", "total_cost": "-5.0"}]
    assert body["failed"][0]["table_version"] == 7
    assert alert.to_markdown().splitlines() == [
        "**quality gate failed** (quality run `run-1`, 2026-11-26T02:00:00+00:00)",
        "",
        "- `gold.plan_costs` non_negative(total_cost) [error]: 50.00% of rows comply "
        '(e.g. {"plan_id": "p1", "total_cost": "-5.0"})',
    ]


class _Flaky:
    """A channel that fails `failures` times, then delivers."""

    def __init__(self, name: str, failures: int) -> None:
        self.name = name
        self.failures = failures
        self.delivered: list[Alert] = []

    def send(self, alert: Alert) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("channel down")
        self.delivered.append(alert)


def test_dispatch_retries_each_channel_and_never_raises() -> None:
    recovers, stays_down = _Flaky("recovers", 2), _Flaky("down", 99)
    outcome = dispatch(_alert(), [stays_down, recovers], attempts=3, backoff_s=0.0)
    assert outcome == {"down": "ConnectionError: channel down", "recovers": "sent"}
    assert recovers.delivered == [_alert()]
    assert stays_down.failures == 96  # tried exactly three times


def test_profile_page_has_one_chart_per_distribution() -> None:
    columns = [
        ColumnSummary("plan_type", "String", 0.9, 3, histogram=[("HMO", 5), ("PPO", 4)]),
        ColumnSummary(
            "total_cost", "Fractional", 1.0, 40, buckets=[(0.0, 10.0, 3), (10.0, 20.0, 7)], mean=9.5
        ),
        ColumnSummary("plan_id", "String", 1.0, 50),
    ]
    profile = TableProfile(
        "gold.plan_costs", 4, 50, columns, ["doc"], datetime(2026, 11, 26, tzinfo=UTC)
    )
    page = render_html(profile)
    assert page.count('<figure class="chart"') == 3  # overview, plan_type, total_cost
    assert page.count("<svg") == 3
    assert 'data-column="plan_type"' in page and 'data-column="total_cost"' in page
    assert "Not profiled (binary or nested): doc" in page
    assert "<script" not in page


def test_history_page_draws_status_per_table_per_run() -> None:
    first, second = datetime(2026, 11, 25, 2, tzinfo=UTC), datetime(2026, 11, 26, 2, tzinfo=UTC)
    page = report.render_history_html(
        statuses=[
            (first, "gold.plan_costs", 0, 0),
            (first, "silver.plans", 0, 1),
            (second, "gold.plan_costs", 2, 0),
        ],
        row_counts=[(first, "gold.plan_costs", 200.0), (second, "gold.plan_costs", 90.0)],
        failing=[("gold.plan_costs", "unique(plan_id)", "error", "98% of key values occur once")],
        generated_at=second,
    )
    assert "2 run(s) of 2 table(s)" in page
    assert page.count('<figure class="chart"') == 2 and page.count("<svg") == 2
    assert "<td>unique(plan_id)</td>" in page
    # one grid cell per (table, run): silver.plans was not in the second run
    status_svg = page[page.index('data-chart="status"') : page.index('data-chart="row-counts"')]
    assert "gold.plan_costs" in status_svg and "silver.plans" in status_svg
