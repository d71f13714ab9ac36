"""bench/resources.py's pure parts: /proc parsing, grouping, CPU accounting, summary, table."""

from __future__ import annotations

from resources import (
    ALL,
    CHILDREN,
    DRIVER,
    OTHER,
    SPARK_JVM,
    SPARK_WORKERS,
    Accumulator,
    Memory,
    ProcStat,
    Reading,
    Sample,
    classify,
    group_rss_kib,
    interval_cpu,
    parse_machine_busy,
    parse_stat,
    parse_status,
    resource_table,
)

# A real line's layout (proc(5)); utime 250, stime 50, cutime 30, cstime 20, starttime 6529236.
STAT = (
    "3555 (my (odd) name) S 3512 3512 31005 0 -1 4194304 99 0 0 0 250 50 30 20 20 0 1 0 "
    "6529236 3133440 392 18446744073709551615 94750293340160 94750293360041 0 0 0 0 0 0 0 0 "
    "0 17 0 0 0 0 0 0"
)


def test_parse_stat_takes_the_name_up_to_the_last_parenthesis() -> None:
    assert parse_stat(STAT, ticks_per_s=100) == ProcStat(
        pid=3555, comm="my (odd) name", ppid=3512, start_ticks=6529236, own_s=3.0, reaped_s=0.5
    )


def test_parse_status_reads_the_resident_set_split() -> None:
    text = (
        "Name:\tpostgres\nUmask:\t0077\nState:\tS (sleeping)\nVmPeak:\t  222000 kB\n"
        "VmRSS:\t   30000 kB\nRssAnon:\t    2000 kB\nRssFile:\t   12000 kB\n"
        "RssShmem:\t   16000 kB\nThreads:\t1\n"
    )
    assert parse_status(text) == Memory(
        rss_kib=30000, anon_kib=2000, file_kib=12000, shmem_kib=16000
    )


def test_parse_status_without_split_or_address_space() -> None:
    assert parse_status("Name:\told\nVmRSS:\t  500 kB\n") == Memory(500, 500, 0, 0)
    assert parse_status("Name:\tkworker/0:1\nState:\tI (idle)\nThreads:\t1\n") is None


def test_parse_machine_busy_leaves_out_idle_and_iowait() -> None:
    text = "cpu  1000 10 300 50000 400 5 20 7 0 0\ncpu0 500 5 150 25000 200 2 10 3 0 0\n"
    assert parse_machine_busy(text, ticks_per_s=100) == 13.42


def proc(pid: int, ppid: int, comm: str = "x") -> ProcStat:
    return ProcStat(pid=pid, comm=comm, ppid=ppid, start_ticks=1, own_s=0.0, reaped_s=0.0)


def test_classify_groups_the_driver_its_jvm_and_the_services() -> None:
    procs = {
        p.pid: p
        for p in [
            proc(1, 0, "init"),
            proc(100, 1, "python"),
            proc(101, 100, "java"),
            proc(102, 101, "python3"),  # pyspark.daemon
            proc(103, 102, "python3"),  # one of its workers
            proc(104, 100, "sh"),
            proc(105, 104, "java"),  # a grandchild java is not the gateway
            proc(106, 100, "ferretdb"),  # a service this process started
            proc(200, 1, "postgres"),
            proc(201, 200, "postgres"),
            proc(202, 200, "postgres"),
            proc(300, 1, "java"),
            proc(400, 1, "bash"),  # someone else's
        ]
    }
    services = {"postgres": 200, "kafka": 300, "ferretdb": 106, "elasticsearch": 999}
    assert classify(procs, driver=100, services=services) == {
        100: DRIVER,
        101: SPARK_JVM,
        102: SPARK_WORKERS,
        103: SPARK_WORKERS,
        104: CHILDREN,
        105: CHILDREN,
        106: "ferretdb",
        200: "postgres",
        201: "postgres",
        202: "postgres",
        300: "kafka",
    }


def test_group_rss_counts_shared_pages_once() -> None:
    readings = [
        Reading("postgres", 1, 0.0, 0.0, Memory(30000, 2000, 12000, 16000)),
        Reading("postgres", 200, 0.0, 0.0, Memory(20000, 1000, 11000, 8000)),
        Reading("postgres", 200, 0.0, 0.0, None),
    ]
    assert group_rss_kib(readings) == 3000 + 12000 + 16000
    assert group_rss_kib([]) == 0


def reading(group: str, ppid: int, own: float, reaped: float = 0.0, rss: int = 0) -> Reading:
    return Reading(group, ppid, own, reaped, Memory(rss, rss, 0, 0))


def test_interval_cpu_counts_vanished_children_once() -> None:
    previous = Sample(
        t=0.0,
        phase=None,
        busy_s=100.0,
        procs={
            (100, 1): reading(DRIVER, 1, 5.0),
            (200, 1): reading("postgres", 1, 10.0, reaped=40.0),
            (201, 7): reading("postgres", 200, 2.0),  # exits before the next sample
        },
    )
    current = Sample(
        t=0.5,
        phase=None,
        busy_s=104.0,
        procs={
            (100, 1): reading(DRIVER, 1, 5.5, reaped=0.25),  # a child born and reaped unseen
            # the backend's 2.0 were seen, 0.25 more in its last moments: cutime grew by 2.25
            (200, 1): reading("postgres", 1, 10.5, reaped=42.25),
            (202, 9): reading("postgres", 200, 0.75),  # a new backend
        },
    )
    assert interval_cpu(previous, current) == {
        DRIVER: 0.5,
        CHILDREN: 0.25,
        "postgres": 0.5 + 0.75 + 0.25,
        OTHER: 4.0 - 0.5 - 0.25 - 1.5,
    }


def test_accumulator_summarises_the_window_and_each_phase() -> None:
    def sample(
        t: float, phase: str | None, busy: float, driver: float, jvm: float | None
    ) -> Sample:
        procs = {(100, 1): reading(DRIVER, 1, driver, rss=100 * 1024)}
        if jvm is not None:  # RSS in MiB = its CPU seconds
            procs[(101, 2)] = reading(SPARK_JVM, 100, jvm, rss=int(jvm * 1024))
            # the zombie spark-class leaves: no address space, not counted as a process
            procs[(102, 2)] = Reading(SPARK_WORKERS, 101, 0.0, 0.0, None)
        return Sample(t, phase, busy, procs)

    accumulator = Accumulator()
    for s in [
        sample(0.0, None, 0.0, 1.0, None),
        sample(0.5, None, 1.0, 1.25, 0.5),  # the JVM starts
        sample(1.0, "load", 2.0, 1.5, 1.0),
        sample(1.5, "load", 3.5, 1.75, 2.0),
        sample(2.0, None, 4.5, 2.0, 2.5),
    ]:
        accumulator.add(s)
    assert accumulator.summary(order=[DRIVER, SPARK_JVM, "postgres"]) == {
        "seconds": 2.0,
        "samples": 5,
        "groups": {
            DRIVER: {"processes": 1, "peak_rss_mib": 100.0, "mean_rss_mib": 100.0, "cpu_s": 1.0},
            SPARK_JVM: {"processes": 1, "peak_rss_mib": 2.5, "mean_rss_mib": 1.5, "cpu_s": 2.5},
            SPARK_WORKERS: {"processes": 0, "cpu_s": 0.0},
            OTHER: {"cpu_s": 1.0},
        },
        "phases": {
            "load": {
                "seconds": 1.0,
                "samples": 2,
                "groups": {
                    DRIVER: {
                        "processes": 1,
                        "peak_rss_mib": 100.0,
                        "mean_rss_mib": 100.0,
                        "cpu_s": 0.5,
                    },
                    SPARK_JVM: {
                        "processes": 1,
                        "peak_rss_mib": 2.0,
                        "mean_rss_mib": 1.5,
                        "cpu_s": 1.5,
                    },
                    SPARK_WORKERS: {"processes": 0, "cpu_s": 0.0},
                    OTHER: {"cpu_s": 0.5},
                },
            }
        },
    }
    assert set(accumulator.phases) == {ALL, "load"}


def test_resource_table() -> None:
    groups = {
        DRIVER: {"processes": 1, "peak_rss_mib": 412.4, "mean_rss_mib": 380.0, "cpu_s": 12.34},
        "postgres": {"processes": 9, "peak_rss_mib": 1210.0, "mean_rss_mib": 900.5, "cpu_s": 3.0},
        CHILDREN: {"processes": 0, "cpu_s": 0.2},
        OTHER: {"cpu_s": 1.5},
    }
    assert resource_table(groups, seconds=10.0) == [
        "| process group | processes | peak RSS (MiB) | mean RSS (MiB) | CPU (s) | cores |",
        "|---|---:|---:|---:|---:|---:|",
        "| driver (this Python process) | 1 | 412 | 380 | 12.3 | 1.23 |",
        "| postgres | 9 | 1,210 | 900 | 3.0 | 0.30 |",
        "| other child processes | 0 | - | - | 0.2 | 0.02 |",
        "| rest of the machine (CPU only) | - | - | - | 1.5 | 0.15 |",
    ]
