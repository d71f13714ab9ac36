"""Quality suites on real Delta tables with real Spark and PyDeequ: each rule kind fails on a
crafted bad table and passes on a good one, Deequ's anomaly detection fires on an overnight drop,
stale tables breach their SLA, history accumulates, the gate holds back a publish and alerts a
real HTTP endpoint, and the profiling report renders in headless Chromium."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DoubleType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)
from support import WebhookReceiver, env_for, prefect_test_server, write_plan_costs

from lakehouse import cli, io, tables
from lakehouse.config import Config
from lakehouse.gold.refresh import Watermark, overwrite
from lakehouse.quality import report, runner, suites
from lakehouse.quality.alerts import LogNotifier, PrefectNotifier, WebhookNotifier
from lakehouse.quality.gate import publish_if_clean
from lakehouse.quality.profile import profile_table
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
from lakehouse.quality.suites import Suite
from lakehouse.tables import Table

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)

ITEMS = Table(
    "test.items",
    "test/items",
    StructType(
        [
            StructField("id", StringType(), False),
            StructField("kind", StringType(), True),
            StructField("cost", DoubleType(), True),
            StructField("service_id", StringType(), True),
            StructField("day", DateType(), True),
            StructField("event_ts", TimestampType(), True),
        ]
    ),
)


def _item(id_: str, **overrides: object) -> tuple:
    row = {
        "id": id_,
        "kind": "a",
        "cost": 10.0,
        "service_id": "s1",
        "day": date(2024, 5, 1),
        "event_ts": NOW - timedelta(minutes=5),
    }
    row.update(overrides)
    return tuple(row.values())


def _lake(config: Config, tmp_path: Path) -> Config:
    return dataclasses.replace(config, warehouse=str(tmp_path / "warehouse"))


def _write(spark, config: Config, table: Table, rows: list[tuple]) -> None:
    """Replace the table's content (creating it) with `rows`."""
    io.ensure_table(spark, config, table)
    frame = spark.createDataFrame(rows, table.schema)
    frame.write.format("delta").mode("overwrite").save(table.path(config))


def _services(spark, config: Config) -> None:
    _write(
        spark,
        config,
        tables.SERVICES,
        [(s, f"service {s}", "org", NOW, NOW) for s in ("s1", "s2")],
    )


def _check(spark, config: Config, rule, rows: list[tuple], now: datetime = NOW):
    _write(spark, config, ITEMS, rows)
    results, _ = runner.run_suite(spark, config, Suite(ITEMS, (rule,)), now)
    (result,) = results
    return result


GOOD = [_item("i1"), _item("i2", kind="b", service_id="s2", cost=0.0)]
RULE_CASES = [
    (Complete("kind"), _item("bad", kind=None)),
    (Unique(("id",)), _item("i1", kind="b")),
    (NonNegative("cost"), _item("bad", cost=-0.01)),
    (AllowedValues("kind", ("a", "b")), _item("bad", kind="zz")),
    (References("service_id", tables.SERVICES.name, "service_id"), _item("bad", service_id="s9")),
    (
        Satisfies(
            "day within 1990-01-01 .. today", "day BETWEEN DATE'1990-01-01' AND current_date()"
        ),
        _item("bad", day=date(2999, 1, 1)),
    ),
]


@pytest.mark.parametrize(("rule", "bad_row"), RULE_CASES, ids=lambda v: getattr(v, "kind", ""))
def test_each_rule_kind_passes_good_data_and_fails_crafted_bad_data(
    spark, config: Config, tmp_path: Path, rule, bad_row: tuple
) -> None:
    lake = _lake(config, tmp_path)
    _services(spark, lake)

    good = _check(spark, lake, rule, GOOD)
    assert (good.passed, good.value, good.samples) == (True, 1.0, [])

    bad = _check(spark, lake, rule, [*GOOD, bad_row])
    assert not bad.passed
    assert bad.blocking  # the rules default to severity error
    assert bad.value is not None and bad.value < 1.0
    # the samples name the offending row (both rows of a duplicated key)
    offending_ids = sorted(sample["id"] for sample in bad.samples)
    assert offending_ids == (["i1", "i1"] if isinstance(rule, Unique) else ["bad"])


def test_a_missing_reference_table_breaks_every_reference(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = _lake(config, tmp_path)  # no silver.services at all
    rule = References("service_id", tables.SERVICES.name, "service_id")
    result = _check(spark, lake, rule, GOOD)
    assert (result.passed, result.value) == (False, 0.0)
    assert sorted(sample["id"] for sample in result.samples) == ["i1", "i2"]


def test_a_warning_check_fails_without_blocking(spark, config: Config, tmp_path: Path) -> None:
    lake = _lake(config, tmp_path)
    result = _check(spark, lake, Complete("kind", severity="warning"), [_item("x", kind=None)])
    assert (result.passed, result.blocking, result.severity) == (False, False, "warning")


def test_overnight_row_count_drop_is_flagged_by_deequ_anomaly_detection(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = _lake(config, tmp_path)
    rule = RowCountChange(max_drop=0.5)
    first = _check(spark, lake, rule, [_item(f"i{n}") for n in range(100)], NOW)
    assert (first.passed, first.value) == (True, 100.0)
    assert first.message == "first run: no previous metrics to compare with"

    # a small overnight loss is normal churn
    second = _check(spark, lake, rule, [_item(f"i{n}") for n in range(90)], NOW + timedelta(days=1))
    assert (second.passed, second.value) == (True, 90.0)

    # the next night the table holds fewer than half the rows it had
    third = _check(spark, lake, rule, [_item(f"i{n}") for n in range(40)], NOW + timedelta(days=2))
    assert (third.passed, third.value) == (False, 40.0)
    assert "anomalous change" in third.message

    # Deequ's repository kept one entry per run, with the row counts
    repository = json.loads(
        Path(runner.metrics_repository_path(lake, Suite(ITEMS, (rule,)))).read_text()
    )
    sizes = sorted(
        (entry["resultKey"]["dataSetDate"], metric["metric"]["value"])
        for entry in repository
        for metric in entry["analyzerContext"]["metricMap"]
        if metric["metric"]["name"] == "Size"
    )
    day_ms = 86_400_000
    start = int(NOW.timestamp() * 1000)
    assert sizes == [(start, 100.0), (start + day_ms, 90.0), (start + 2 * day_ms, 40.0)]


def test_mean_jump_is_flagged(spark, config: Config, tmp_path: Path) -> None:
    lake = _lake(config, tmp_path)
    rule = MeanChange("cost", max_change=0.5)
    assert _check(spark, lake, rule, [_item("a", cost=100.0), _item("b", cost=120.0)]).passed
    later = NOW + timedelta(days=1)
    jumped = _check(spark, lake, rule, [_item("a", cost=300.0), _item("b", cost=360.0)], later)
    assert (jumped.passed, jumped.value) == (False, 330.0)


def test_stale_silver_breaches_its_freshness_sla(spark, config: Config, tmp_path: Path) -> None:
    lake = _lake(config, tmp_path)
    rule = Freshness(max_age_minutes=60.0, column="event_ts")
    rows = [
        _item("old", event_ts=NOW - timedelta(days=3)),
        _item("new", event_ts=NOW - timedelta(minutes=30)),
    ]
    fresh = _check(spark, lake, rule, rows, NOW)
    assert (fresh.passed, fresh.value) == (True, pytest.approx(30.0))
    stale = _check(spark, lake, rule, rows, NOW + timedelta(hours=2))
    assert (stale.passed, stale.value) == (False, pytest.approx(150.0))
    assert "breaches the 60 min SLA" in stale.message


def test_gold_freshness_follows_the_source_commit_its_watermark_names(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = _lake(config, tmp_path)
    silver = (tables.PLANS, tables.PLAN_SERVICES)
    for source in silver:
        io.ensure_table(spark, lake, source)
    sources = {t.name: io.latest_version(spark, lake, t) for t in silver}
    io.ensure_table(spark, lake, tables.SERVICE_PAIRS)
    pair = [("a", "b", "A", "B", 3, 0.5, 0.6, 0.7, 1.2)]
    overwrite(
        spark.createDataFrame(pair, tables.GOLD_SERVICE_PAIRS),
        lake,
        tables.SERVICE_PAIRS,
        Watermark(sources),
    )
    committed = max(io.commit_epoch(spark, lake, t, sources[t.name]) or 0 for t in silver)
    committed_at = datetime.fromtimestamp(committed, UTC)
    rule = Freshness(max_age_minutes=24 * 60.0)
    suite = Suite(tables.SERVICE_PAIRS, (rule,))

    (fresh,), _ = runner.run_suite(spark, lake, suite, committed_at + timedelta(hours=1))
    assert (fresh.passed, fresh.value) == (True, pytest.approx(60.0, abs=1.0))
    (stale,), _ = runner.run_suite(spark, lake, suite, committed_at + timedelta(days=2))
    assert (stale.passed, stale.value) == (False, pytest.approx(48 * 60.0, abs=1.0))

    # a gold table holding rows no refresh stamped has no data to date
    trend = ("HMO", "org", date(2024, 1, 1), 3, *[1.0] * 9, None, None, None)
    _write(spark, lake, tables.COST_TRENDS, [trend])
    (never,), _ = runner.run_suite(spark, lake, Suite(tables.COST_TRENDS, (rule,)), NOW)
    assert (never.passed, never.message) == (
        False,
        "no data to date (no watermark: never refreshed)",
    )
    # ... while an empty one without a watermark holds nothing that could be stale
    io.ensure_table(spark, lake, tables.PLAN_ANOMALIES)
    (empty,), _ = runner.run_suite(spark, lake, Suite(tables.PLAN_ANOMALIES, (rule,)), NOW)
    assert (empty.passed, empty.value) == (True, None)


def test_results_and_metrics_accumulate_across_runs(spark, config: Config, tmp_path: Path) -> None:
    lake = _lake(config, tmp_path)
    _write(spark, lake, ITEMS, GOOD)
    suite = Suite(ITEMS, (Unique(("id",)), NonNegative("cost"), RowCountChange(0.5)))
    first = runner.run_quality(spark, lake, [suite], now=NOW)
    _write(spark, lake, ITEMS, [*GOOD, _item("neg", cost=-1.0)])
    second = runner.run_quality(spark, lake, [suite], now=NOW + timedelta(days=1))

    results = io.read_table(spark, lake, tables.QUALITY_RESULTS_TABLE)
    stored = sorted(
        (r.run_id, r.table_name, r.table_version, r.suite_version, r.check_name, r.status)
        for r in results.collect()
    )
    expected = sorted(
        (run.run_id, "test.items", version, suite.version, check, status)
        for run, version, statuses in (
            (first, 1, ("passed", "passed", "passed")),
            (second, 2, ("passed", "failed", "passed")),
        )
        for check, status in zip(
            ("unique(id)", "non_negative(cost)", "row_count_change(drop <= 50%)"),
            statuses,
            strict=True,
        )
    )
    assert stored == expected
    history = [(h.run_id, h.checks, h.errors) for h in report.run_history(results).collect()]
    assert history == [(second.run_id, 3, 1), (first.run_id, 3, 0)]

    metrics = io.read_table(spark, lake, tables.QUALITY_METRICS_TABLE)
    sizes = sorted((m.run_id, m.value) for m in metrics.where("metric = 'Size'").collect())
    assert sizes == sorted([(first.run_id, 2.0), (second.run_id, 3.0)])


def _gold_costs(spark, config: Config, total_costs: dict[str, float]) -> None:
    """gold.plan_costs with the given totals, stamped with a watermark of current silver."""
    rows = [
        (
            pid,
            1,
            f"org-{n % 3}",
            suites.PLAN_TYPES[n % len(suites.PLAN_TYPES)],
            date(2024, 1, 5),
            date(2024, 1, 1),
            100.0 + 50.0 * (n % 7),
            10.0,
            1,
            1,
            5.0,
            5.0,
            5.0,
            cost,
            NOW,
        )
        for n, (pid, cost) in enumerate(total_costs.items())
    ]
    write_plan_costs(spark, config, rows)


def test_gate_holds_back_publish_and_alerts_a_real_webhook(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = _lake(config, tmp_path)
    chosen = suites.select(lake, table="gold.plan_costs")
    published: list[str] = []

    with WebhookReceiver() as receiver:
        notifiers = [LogNotifier(), WebhookNotifier(receiver.url, timeout_s=5.0)]
        _gold_costs(spark, lake, {"p-1": 115.0, "p-2": 120.0})
        clean = publish_if_clean(spark, lake, lambda: published.append("v1"), chosen, notifiers)
        assert (clean.published, clean.alert, published, receiver.received) == (
            True,
            None,
            ["v1"],
            [],
        )

        _gold_costs(spark, lake, {"p-1": 115.0, "p-2": 120.0, "p-bad": -40.0})
        held = publish_if_clean(spark, lake, lambda: published.append("v2"), chosen, notifiers)

    assert not held.published
    assert published == ["v1"]  # the bad version never reached the publish step
    assert held.deliveries == {"log": "sent", "webhook": "sent"}
    (alert,) = receiver.received
    assert alert["title"] == "quality gate failed: 1 error check(s) on gold.plan_costs"
    (failed,) = alert["failed"]
    assert (failed["table"], failed["check"], failed["severity"]) == (
        "gold.plan_costs",
        "non_negative(total_cost)",
        "error",
    )
    assert failed["value"] == pytest.approx(2 / 3)
    assert [(s["plan_id"], s["total_cost"]) for s in failed["samples"]] == [("p-bad", "-40.0")]


def test_prefect_notification_block_delivers_the_alert(
    spark, config: Config, tmp_path: Path
) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    lake = _lake(config, tmp_path)
    chosen = suites.select(lake, table="gold.plan_costs")
    _gold_costs(spark, lake, {"p-1": 100.0, "p-bad": -1.0})
    with WebhookReceiver() as receiver, prefect_test_server():
        CustomWebhookNotificationBlock(
            name="quality",
            url=receiver.url,
            json_data={"subject": "{{subject}}", "text": "{{body}}"},
        ).save("data-quality", overwrite=True)
        held = publish_if_clean(
            spark,
            lake,
            lambda: pytest.fail("publish must not run"),
            chosen,
            [PrefectNotifier("custom-webhook/data-quality")],
        )
    assert held.deliveries == {"prefect": "sent"}
    (message,) = receiver.received
    assert message["subject"] == "quality gate failed: 1 error check(s) on gold.plan_costs"
    assert "non_negative(total_cost) [error]" in message["text"] and "p-bad" in message["text"]


def test_profile_report_renders_its_charts_in_headless_chromium(
    spark, config: Config, tmp_path: Path, output_dir: Path
) -> None:
    from playwright.sync_api import sync_playwright

    lake = dataclasses.replace(
        _lake(config, tmp_path),
        quality=dataclasses.replace(config.quality, reports_dir=str(tmp_path / "reports")),
    )
    _gold_costs(spark, lake, {f"p-{n}": float(50 + (n * 37) % 400) for n in range(300)})
    page_path = profile_table(spark, lake, "gold.plan_costs", NOW)
    assert page_path == tmp_path / "reports/profiles/gold.plan_costs/20261126T020000Z.html"

    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: `make setup` installs Debian's chromium package"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(page_path.as_uri())
            charts = page.locator("figure.chart")
            columns = charts.evaluate_all("els => els.map(e => e.dataset.column)")
            # overview, value histograms of the few-valued columns, the KLL sketch of the
            # many-valued total; constant columns get no chart
            assert columns == ["overview", "org", "plan_type", "plan_deductible", "total_cost"]
            captions = page.locator("figure.chart figcaption").all_inner_texts()
            assert captions[2] == "plan_type: most frequent values"
            assert captions[4] == "total_cost: distribution (KLL sketch, 20 buckets)"
            for index in range(charts.count()):
                chart = charts.nth(index).locator("svg")
                box = chart.bounding_box()
                assert box is not None and box["width"] > 200 and box["height"] > 100
                # matplotlib draws each bar as a path inside the axes' patch group
                assert chart.locator("g[id^='patch'] path").count() >= 2
            assert page.locator("h1").inner_text() == "gold.plan_costs"
            page.screenshot(path=str(output_dir / "profile.png"), full_page=True)
        finally:
            browser.close()
    assert (output_dir / "profile.png").stat().st_size > 10_000


def test_quality_cli_reports_failures_history_and_profiles(
    config: Config,
    tmp_path: Path,
    spark,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lake = _lake(config, tmp_path)
    _services(spark, lake)
    _write(
        spark,
        lake,
        tables.PLAN_SERVICES,
        [
            ("p1", "ps1", "s1", "service s1", "org", 10.0, 5.0, 1, NOW),
            ("p1", "ps2", "s404", "gone", "org", 10.0, 5.0, 1, NOW),
        ],
    )
    # The CLI in this process (its exit status, stdout and stderr as a shell sees them), on the
    # test run's SparkSession: a process per command would only add a JVM start each.
    for var, value in {**env_for(lake), "LAKEHOUSE_STATE_DIR": str(tmp_path / "state")}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        status = cli.main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["lakehouse", *args], status, out, err)

    failed = run("quality", "run", "--table", "silver.plan_services")
    assert failed.returncode == 1, failed.stderr
    lines = failed.stdout.splitlines()
    assert any(
        "references(service_id -> silver.services.service_id)" in line and " FAIL " in line
        for line in lines
    ), failed.stdout
    assert lines[-1].startswith(
        "quality FAILED: 1 tables, 6 checks, 5 passed, 1 error(s), 0 warning(s)"
    )

    shown = run("quality", "report", "--runs", "5", "--html")
    assert shown.returncode == 1, shown.stderr  # the latest result of a check is a failed error
    assert "last 1 run(s):" in shown.stdout and "silver.plan_services" in shown.stdout
    history_page = Path(shown.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    page = history_page.read_text()
    assert 'data-chart="status"' in page and 'data-chart="row-counts"' in page
    assert "references(service_id -&gt; silver.services.service_id)" in page

    profiled = run("quality", "profile", "silver.plan_services")
    assert profiled.returncode == 0, profiled.stderr
    report_path = Path(profiled.stdout.strip().split(": ", 1)[1])
    assert report_path.is_relative_to(
        tmp_path / "state/reports/quality/profiles/silver.plan_services"
    )
    assert report_path.read_text().count('<figure class="chart"') >= 2

    unknown = run("quality", "run", "--table", "silver.nope")
    assert unknown.returncode == 2
    assert "no quality suite for table 'silver.nope'" in unknown.stderr
    assert os.path.exists(tmp_path / "warehouse/quality/results")


def _merge_items(spark, config: Config, rows: list[tuple], deleted: tuple[str, ...] = ()) -> None:
    """Upsert `rows` by id and delete `deleted`, in one MERGE: a row-by-row change."""
    source = spark.createDataFrame(
        [(*r, False) for r in rows] + [(_item(i)[0], *_item(i)[1:], True) for i in deleted],
        StructType([*ITEMS.schema.fields, StructField("_gone", BooleanType(), False)]),
    )
    values = {c: f"s.{c}" for c in ITEMS.schema.fieldNames()}
    (
        io.delta_table(spark, config, ITEMS)
        .alias("t")
        .merge(source.alias("s"), "t.id = s.id")
        .whenMatchedDelete(condition="s._gone")
        .whenMatchedUpdate(set=values)
        .whenNotMatchedInsert(condition="NOT s._gone", values=values)
        .execute()
    )


def test_row_rules_read_only_the_changed_rows_until_those_are_clean(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = dataclasses.replace(
        _lake(config, tmp_path),
        quality=dataclasses.replace(
            config.quality, changed_rows_only=True, full_pass_weekday="sunday"
        ),
    )
    _services(spark, lake)
    suite = Suite(
        ITEMS,
        (
            Complete("kind"),
            Unique(("id",)),
            NonNegative("cost"),
            References("service_id", tables.SERVICES.name, "service_id"),
            RowCountChange(0.5),
        ),
    )
    monday = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    lines: list[str] = []

    def check(hours: int) -> runner.QualityRun:
        return runner.run_quality(
            spark, lake, [suite], monday + timedelta(hours=hours), progress=lines.append
        )

    def by_check(run: runner.QualityRun) -> dict[str, runner.CheckResult]:
        return {r.check: r for r in run.results}

    _write(spark, lake, ITEMS, [_item(f"i{n}", cost=float(n)) for n in range(40)])
    first = check(0)
    assert lines[-1].endswith("every row: no clean check recorded)")
    assert all(r.passed for r in first.results)

    # one row turns negative, one new row names an unknown service, 38 rows stay as they were
    _merge_items(spark, lake, [_item("i3", cost=-1.0), _item("new", service_id="s9")])
    second = check(1)
    assert lines[-1].endswith("rows changed in v2..v2)")
    results = by_check(second)
    negative = results["non_negative(cost)"]
    reference = results["references(service_id -> silver.services.service_id)"]
    # judged on the 2 changed rows: half of them comply, each sample is the offending row
    assert (negative.passed, negative.value, [s["id"] for s in negative.samples]) == (
        False, 0.5, ["i3"],
    )  # fmt: skip
    assert (reference.passed, reference.value, [s["id"] for s in reference.samples]) == (
        False, 0.5, ["new"],
    )  # fmt: skip
    assert results["complete(kind)"].message == "ok [rows changed in v2..v2]"
    # the table-wide rule still counts every row
    assert [m.value for m in second.metrics if m.name == "Size"] == [41.0]

    # nothing changed, but the failed rows are checked again: the clean check did not advance
    third = check(2)
    assert lines[-1].endswith("rows changed in v2..v2)")
    assert not by_check(third)["non_negative(cost)"].passed

    # fixed: the rows changed since the last clean check pass, and the check advances
    _merge_items(spark, lake, [_item("i3", cost=3.0)], deleted=("new",))
    fourth = check(3)
    assert lines[-1].endswith("rows changed in v2..v3)")
    assert all(r.passed for r in fourth.results)
    check(4)
    assert lines[-1].endswith("no change since the clean check of v3)")

    # a new row that repeats an unchanged row's key breaks uniqueness among all rows sharing it
    io.append(spark.createDataFrame([_item("i5", kind="b")], ITEMS.schema), lake, ITEMS)
    fifth = check(5)
    assert lines[-1].endswith("rows changed in v4..v4)")
    unique = by_check(fifth)["unique(id)"]
    assert (unique.passed, sorted(s["id"] for s in unique.samples)) == (False, ["i5", "i5"])

    # the weekly full pass reads every row
    sunday = check(6 * 24)
    assert lines[-1].endswith("every row: the sunday full pass)")
    assert not by_check(sunday)["unique(id)"].passed
