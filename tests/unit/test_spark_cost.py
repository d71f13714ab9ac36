"""lakehouse.spark_cost on the test run's SparkSession: the meter counts exactly the jobs, stages
and tasks a block runs (known from the shape of the work), and budgets name what they exceed."""

from __future__ import annotations

import threading

from lakehouse import spark_cost
from lakehouse.spark_cost import Budget, SparkCost, StageCost


def test_counts_the_jobs_stages_and_tasks_of_the_block(spark) -> None:
    spark.range(10).count()  # before the block: not counted
    with spark_cost.measure(spark) as cost:
        spark.sparkContext.parallelize(range(12), 3).count()  # 1 job, 1 stage of 3 tasks
        spark.sparkContext.parallelize(range(12), 4).map(lambda x: (x % 2, x)).groupByKey(
            2
        ).count()  # 1 job: a map stage of 4 tasks, then a reduce stage of 2
    result = cost.result
    assert (result.jobs, len(result.stages), result.tasks) == (2, 3, 9)
    assert sorted(s.tasks for s in result.stages) == [2, 3, 4]
    assert result.widest is not None and result.widest.tasks == 4


def test_counts_jobs_of_other_threads_too(spark) -> None:
    """Prefect runs flow tasks, and Spark streaming queries run batches, in threads of their own."""
    with spark_cost.measure(spark) as cost:
        worker = threading.Thread(target=lambda: spark.sparkContext.parallelize([1, 2], 2).count())
        worker.start()
        worker.join()
    assert (cost.result.jobs, cost.result.tasks) == (1, 2)


def test_an_empty_block_costs_nothing(spark) -> None:
    with spark_cost.measure(spark) as cost:
        pass
    assert cost.result == SparkCost(jobs=0, stages=())
    assert cost.result.render() == "0 jobs, 0 stages, 0 tasks"


def test_budget_names_each_bound_exceeded() -> None:
    cost = SparkCost(jobs=12, stages=(StageCost(1, "a", 3), StageCost(2, "vacuum", 10_000)))
    assert Budget(jobs=20, tasks=20_000, widest_stage=10_000).overruns(cost) == []
    assert Budget(jobs=10, tasks=100, widest_stage=8).overruns(cost) == [
        "jobs 12 > 10",
        "tasks 10,003 > 100",
        "widest stage tasks 10,000 > 8",
    ]
    assert cost.render() == "12 jobs, 2 stages, 10,003 tasks; widest stage 10,000 tasks (vacuum)"
