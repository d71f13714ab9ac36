"""What a piece of work costs Spark: how many jobs, stages and tasks it ran.

These counts are deterministic for a given input and configuration, unlike wall time on a
shared machine, so tests can hold each operation to a budget (`tests/integration/
test_spark_budgets.py`) and benchmarks can say where the time goes. A regression such as a
file listing that schedules 10,000 tasks for a 100-row table shows up as a number, not as a
slow CI run.

    with spark_cost.measure(spark) as cost:
        run_the_work()
    print(cost.result.render())

Every job the application runs between the start and the end of the block is counted, from
whatever thread (Prefect task threads, streaming query threads, foreachBatch callbacks), so
nothing else may run Spark jobs meanwhile. The counts come from Spark's status tracker: its
retention (`spark.ui.retainedJobs`, `spark.ui.retainedStages`) must exceed the block's jobs
and stages, or `measure` raises instead of under-counting. Skipped stages (their output was
reused) ran no task and are left out of `stages`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import SparkSession


class CostUnknown(RuntimeError):
    """The status tracker no longer holds every job or stage of the measured block."""


@dataclass(frozen=True)
class StageCost:
    stage_id: int
    name: str
    tasks: int


@dataclass(frozen=True)
class SparkCost:
    """Jobs, stages and tasks (completed or failed; skipped stages run none) of one block."""

    jobs: int
    stages: tuple[StageCost, ...]

    @property
    def tasks(self) -> int:
        return sum(s.tasks for s in self.stages)

    @property
    def widest(self) -> StageCost | None:
        """The stage that ran the most tasks: where an oversized setting shows first."""
        return max(self.stages, key=lambda s: s.tasks, default=None)

    def render(self) -> str:
        widest = self.widest
        where = "" if widest is None else f"; widest stage {widest.tasks:,} tasks ({widest.name})"
        return f"{self.jobs:,} jobs, {len(self.stages):,} stages, {self.tasks:,} tasks{where}"


@dataclass(frozen=True)
class Budget:
    """Upper bounds for a SparkCost: jobs, tasks, and tasks of the widest stage."""

    jobs: int
    tasks: int
    widest_stage: int

    def overruns(self, cost: SparkCost) -> list[str]:
        """What `cost` exceeds, worded for a test failure (empty: within budget)."""
        widest = cost.widest.tasks if cost.widest else 0
        return [
            f"{what} {actual:,} > {bound:,}"
            for what, actual, bound in (
                ("jobs", cost.jobs, self.jobs),
                ("tasks", cost.tasks, self.tasks),
                ("widest stage tasks", widest, self.widest_stage),
            )
            if actual > bound
        ]


class CostMeter:
    """Filled in when the `measure` block ends."""

    def __init__(self) -> None:
        self._result: SparkCost | None = None

    @property
    def result(self) -> SparkCost:
        if self._result is None:
            raise RuntimeError("the measured block has not ended yet")
        return self._result


@contextmanager
def measure(spark: SparkSession, timeout_s: float = 60.0) -> Iterator[CostMeter]:
    """Count the Spark jobs, stages and tasks run inside the block (see the module doc)."""
    meter = CostMeter()
    first = _marker_job(spark, timeout_s)
    yield meter
    last = _marker_job(spark, timeout_s)
    meter._result = _cost_between(spark, first, last)


def _marker_job(spark: SparkSession, timeout_s: float) -> int:
    """Run a one-task job in a job group of its own and return its id once the status tracker
    has recorded its end: every job before it has been recorded by then (listener events are
    delivered in order). A fresh thread, so the caller's job group and properties stay as
    they are."""
    group = f"lakehouse-cost-marker-{uuid.uuid4().hex}"
    context = spark.sparkContext
    failure: list[BaseException] = []

    def run() -> None:
        try:
            context.setJobGroup(group, "spark_cost marker")
            context.parallelize([0], 1).count()
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="spark-cost-marker", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if failure:
        raise failure[0]
    tracker = context.statusTracker()
    deadline = time.monotonic() + timeout_s
    while True:
        ids = tracker.getJobIdsForGroup(group)
        info = tracker.getJobInfo(ids[0]) if ids else None
        if info is not None and info.status == "SUCCEEDED":
            return ids[0]
        if time.monotonic() > deadline:
            raise CostUnknown(f"the marker job of {group} was not recorded in {timeout_s}s")
        time.sleep(0.02)


def _cost_between(spark: SparkSession, first: int, last: int) -> SparkCost:
    context = spark.sparkContext
    tracker = context.statusTracker()
    retained_jobs = int(context.getConf().get("spark.ui.retainedJobs", "1000"))
    retained_stages = int(context.getConf().get("spark.ui.retainedStages", "1000"))
    if last - first - 1 > retained_jobs:
        raise CostUnknown(
            f"{last - first - 1:,} jobs ran, Spark's status tracker keeps {retained_jobs:,}: "
            "raise spark.ui.retainedJobs"
        )
    stage_ids: set[int] = set()
    for job_id in range(first + 1, last):
        job = tracker.getJobInfo(job_id)
        if job is None:
            raise CostUnknown(f"job {job_id} is no longer in Spark's status tracker")
        stage_ids.update(job.stageIds)
    if len(stage_ids) > retained_stages:
        raise CostUnknown(
            f"{len(stage_ids):,} stages ran, Spark's status tracker keeps {retained_stages:,}: "
            "raise spark.ui.retainedStages"
        )
    stages = []
    for stage_id in sorted(stage_ids):
        stage = tracker.getStageInfo(stage_id)
        # At its limit the tracker drops skipped stages first (they ran no task), and this
        # block's are its newest: a stage it no longer has is a skipped one.
        if stage is not None:
            tasks = stage.numCompletedTasks + stage.numFailedTasks
            stages.append(StageCost(stage_id, stage.name, tasks))
    return SparkCost(jobs=max(0, last - first - 1), stages=tuple(stages))
