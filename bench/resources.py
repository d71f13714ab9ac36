"""Memory and CPU of a benchmark's processes and of the local stack's services, from /proc.

    with ResourceSampler(config) as sampler:
        with sampler.phase("incremental"):
            ...
    report["resources"] = sampler.summary()
    lines += resource_section(report["resources"])

A daemon thread reads /proc every `interval_s` (0.5 s by default) and sorts every process it
finds into a group:

- `driver`: this Python process (its own CPU; its children are groups of their own);
- `spark-jvm`: java children of this process (the py4j gateway JVM that pyspark starts);
- `spark-workers`: descendants of those JVMs (pyspark.daemon and its Python workers, when a
  job runs Python code);
- `children`: any other descendant of this process (the spark-submit launcher until it execs
  the JVM, `java -version`, git, ...);
- one group per running stack service (data services, the local Spark cluster, app servers):
  the service's process and all its descendants (PostgreSQL's backends, a Spark worker's
  executors, ...), found from the stack's pid files;
- `other`: CPU only, the rest of the machine (other users of the shared cores).

Per group and per phase (a phase may be entered several times; its figures add up): peak and
mean RSS over the samples, and CPU seconds (user + system) used. /proc is read directly: Linux
is the only platform the stack runs on, and the project declares no psutil.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakehouse.config import Config

DRIVER = "driver"
SPARK_JVM = "spark-jvm"
SPARK_WORKERS = "spark-workers"
CHILDREN = "children"
OTHER = "other"
# Whole-window figures are stored under this name beside the phases.
ALL = "all"

LABELS = {
    DRIVER: "driver (this Python process)",
    SPARK_JVM: "Spark JVM (py4j gateway)",
    SPARK_WORKERS: "Spark JVM's children (Python workers)",
    CHILDREN: "other child processes",
    OTHER: "rest of the machine (CPU only)",
}

# Key of one process over time: a pid may be reused, its start time (in clock ticks after boot)
# may not be at the same time.
ProcKey = tuple[int, int]


# ------------------------------------------------------------------------------ parsing /proc


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    ppid: int
    start_ticks: int
    own_s: float  # utime + stime
    reaped_s: float  # cutime + cstime: the children it has waited for

    @property
    def key(self) -> ProcKey:
        return (self.pid, self.start_ticks)


def parse_stat(text: str, ticks_per_s: int) -> ProcStat:
    """One /proc/<pid>/stat line (see proc(5))."""
    # The command name is parenthesised and may itself hold spaces and parentheses: split on the
    # first "(" and the last ")".
    head, _, rest = text.partition("(")
    comm, _, tail = rest.rpartition(")")
    fields = tail.split()
    # fields[0] is field 3 (state): field n of proc(5) is fields[n - 3]
    return ProcStat(
        pid=int(head),
        comm=comm,
        ppid=int(fields[1]),
        start_ticks=int(fields[19]),
        own_s=(int(fields[11]) + int(fields[12])) / ticks_per_s,
        reaped_s=(int(fields[13]) + int(fields[14])) / ticks_per_s,
    )


@dataclass(frozen=True)
class Memory:
    """Resident memory of one process, in KiB (/proc/<pid>/status)."""

    rss_kib: int
    anon_kib: int
    file_kib: int
    shmem_kib: int


def parse_status(text: str) -> Memory | None:
    """The resident-set lines of /proc/<pid>/status; None for a process without an address
    space (kernel threads, zombies)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            values[name] = int(value.split()[0])
    if "VmRSS" not in values:
        return None
    rss = values["VmRSS"]
    # kernels before 4.5 have no split: count it all as private
    return Memory(
        rss_kib=rss,
        anon_kib=values.get("RssAnon", rss),
        file_kib=values.get("RssFile", 0),
        shmem_kib=values.get("RssShmem", 0),
    )


def parse_machine_busy(text: str, ticks_per_s: int) -> float:
    """CPU seconds all cores have spent on anything but idling and I/O wait since boot (the
    first line of /proc/stat)."""
    fields = text.split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / ticks_per_s


def classify(
    procs: Mapping[int, ProcStat], driver: int, services: Mapping[str, int]
) -> dict[int, str]:
    """pid -> group, for the processes that belong to one; the others are left out."""
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    groups: dict[int, str] = {}

    def assign(root: int, group: str) -> None:
        stack = [root]
        while stack:
            pid = stack.pop()
            if pid in groups or pid not in procs:
                continue
            groups[pid] = group
            stack.extend(children.get(pid, ()))

    # Services first: if this process started the stack, the services are its descendants too,
    # but they are services.
    for name, pid in services.items():
        assign(pid, name)
    if driver in procs and driver not in groups:
        groups[driver] = DRIVER
        for child in children.get(driver, ()):
            if child in groups:
                continue
            if procs[child].comm == "java":
                groups[child] = SPARK_JVM
                for worker in children.get(child, ()):
                    assign(worker, SPARK_WORKERS)
            else:
                assign(child, CHILDREN)
    return groups


# ------------------------------------------------------------------------------ aggregation


@dataclass(frozen=True)
class Reading:
    group: str
    ppid: int
    own_s: float
    reaped_s: float
    memory: Memory | None


@dataclass(frozen=True)
class Sample:
    t: float  # seconds, monotonic
    # the phase the interval that ends with this sample belongs to (None: outside any phase)
    phase: str | None
    busy_s: float  # machine-wide busy CPU seconds since boot
    procs: Mapping[ProcKey, Reading]


def reaped_group(group: str) -> str:
    """The group a process's waited-for children count in (the CPU a child used after its last
    sample, or in a life too short to be sampled, reaches us only through its parent's cutime).
    The driver's children are not the driver; a JVM's are its launcher (spark-class runs one
    before it execs the JVM) and pyspark.daemon, whose own forks it reaps itself."""
    return CHILDREN if group == DRIVER else group


def group_rss_kib(readings: list[Reading]) -> int:
    """Resident memory of a group of processes. VmRSS counts the pages a process shares with
    others in full (PostgreSQL's shared buffers appear in every backend that touched them, a
    binary's text in every fork): anonymous pages are summed, file-backed and shared-memory pages
    counted once, from the member that maps the most. Exact for one process; for several, the
    shared part is a lower bound and the anonymous part an upper one (a fork's copy-on-write
    pages count in the parent and in the fork)."""
    memories = [r.memory for r in readings if r.memory is not None]
    if not memories:
        return 0
    return (
        sum(m.anon_kib for m in memories)
        + max(m.file_kib for m in memories)
        + max(m.shmem_kib for m in memories)
    )


@dataclass
class GroupStats:
    cpu_s: float = 0.0
    rss_kib: list[int] = field(default_factory=list)
    processes: int = 0


@dataclass
class PhaseStats:
    seconds: float = 0.0
    samples: int = 0
    groups: dict[str, GroupStats] = field(default_factory=dict)

    def group(self, name: str) -> GroupStats:
        return self.groups.setdefault(name, GroupStats())


def interval_cpu(previous: Sample, current: Sample) -> dict[str, float]:
    """CPU seconds per group between two samples, plus OTHER for the rest of the machine.

    Each process counts its own CPU in its group and the CPU of the children it has waited for
    (cutime) in `reaped_group`. A child that was sampled and then vanished had its CPU counted up
    to its last sample, and its parent's cutime now holds all of it: that last value is taken off
    the parent's, so only the child's unsampled tail remains. A process born and reaped between
    two samples is only in its parent's cutime, and counted there.
    """
    cpu: dict[str, float] = {}
    reaped: dict[ProcKey, float] = {}
    for key, now in current.procs.items():
        before = previous.procs.get(key)
        cpu[now.group] = cpu.get(now.group, 0.0) + now.own_s - (before.own_s if before else 0.0)
        reaped[key] = now.reaped_s - (before.reaped_s if before else 0.0)
    by_pid = {pid: (pid, start) for pid, start in current.procs}
    for key, gone in previous.procs.items():
        parent = by_pid.get(gone.ppid)
        if key not in current.procs and parent in reaped and parent in previous.procs:
            reaped[parent] -= gone.own_s + gone.reaped_s
    for key, seconds in reaped.items():
        # negative when a parent does not wait for its children (they are reaped automatically
        # and never reach its cutime)
        if seconds > 0:
            group = reaped_group(current.procs[key].group)
            cpu[group] = cpu.get(group, 0.0) + seconds
    cpu[OTHER] = max(current.busy_s - previous.busy_s - sum(cpu.values()), 0.0)
    return cpu


class Accumulator:
    """Folds samples, in order, into per-phase and whole-window figures."""

    def __init__(self) -> None:
        self.phases: dict[str, PhaseStats] = {}
        self.previous: Sample | None = None

    def add(self, sample: Sample) -> None:
        targets = [self.phases.setdefault(ALL, PhaseStats())]
        if sample.phase is not None:
            targets.append(self.phases.setdefault(sample.phase, PhaseStats()))
        members: dict[str, list[Reading]] = {}
        for reading in sample.procs.values():
            members.setdefault(reading.group, []).append(reading)
        cpu = interval_cpu(self.previous, sample) if self.previous else {}
        for stats in targets:
            stats.samples += 1
            if self.previous:
                stats.seconds += sample.t - self.previous.t
            for name, readings in members.items():
                group = stats.group(name)
                # zombies (no address space) are dead already: spark-class leaves one beside
                # the JVM for its whole life
                alive = sum(1 for r in readings if r.memory is not None)
                if alive:
                    group.rss_kib.append(group_rss_kib(readings))
                group.processes = max(group.processes, alive)
            for name, seconds in cpu.items():
                stats.group(name).cpu_s += seconds
        self.previous = sample

    def summary(self, order: list[str]) -> dict[str, Any]:
        """{"seconds", "samples", "groups": {group: figures}, "phases": {phase: the same}};
        groups in `order`, then any other in the order first seen, OTHER last."""
        whole = self.phases.get(ALL, PhaseStats())
        return {
            **_phase_summary(whole, order),
            "phases": {
                name: _phase_summary(stats, order)
                for name, stats in self.phases.items()
                if name != ALL
            },
        }


def _phase_summary(stats: PhaseStats, order: list[str]) -> dict[str, Any]:
    names = [n for n in order if n in stats.groups]
    names += [n for n in stats.groups if n not in names and n != OTHER]
    names += [OTHER] if OTHER in stats.groups else []
    groups = {}
    for name in names:
        group = stats.groups[name]
        figures: dict[str, Any] = {} if name == OTHER else {"processes": group.processes}
        # no RSS when none of the group's processes was alive at a sample of this window (only
        # its reaped children's CPU was seen); the mean is over the samples it was alive at
        if group.rss_kib:
            figures["peak_rss_mib"] = round(max(group.rss_kib) / 1024, 1)
            figures["mean_rss_mib"] = round(sum(group.rss_kib) / len(group.rss_kib) / 1024, 1)
        figures["cpu_s"] = round(group.cpu_s, 2)
        groups[name] = figures
    return {"seconds": round(stats.seconds, 2), "samples": stats.samples, "groups": groups}


# ------------------------------------------------------------------------------ sampling


def stack_service_pids(config: Config) -> dict[str, int]:
    """Running stack services (data services, the local Spark cluster's master and workers, app
    servers) -> pid, from their pid files."""
    from lakehouse.stack.manager import running_pid
    from lakehouse.stack.services import all_services

    pids = {}
    for service in all_services(config, apps=True, cluster=True):
        pid = running_pid(service)
        if pid is not None:
            pids[service.name] = pid
    return pids


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None  # gone between listing and reading, or not ours to read


class ResourceSampler:
    """Samples /proc in a daemon thread between start() and stop() (or as a context manager);
    see the module doc."""

    def __init__(self, config: Config | None, interval_s: float = 0.5) -> None:
        self.config = config
        self.interval_s = interval_s
        self.ticks_per_s = os.sysconf("SC_CLK_TCK")
        self.driver = os.getpid()
        self.services: dict[str, int] = {}
        self.accumulator = Accumulator()
        self.current_phase: str | None = None
        self.sampler_cpu_s = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ResourceSampler:
        # Resolved once: a benchmark does not restart services, and checking pid files every
        # half second would cost more than the sampling itself.
        self.services = stack_service_pids(self.config) if self.config else {}
        self.sample()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the window (idempotent)."""
        if self._thread is None or self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self.sample()

    def __enter__(self) -> ResourceSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Attribute what happens inside to `name` (as well as to the whole window)."""
        if self.current_phase is not None:
            raise RuntimeError(f"phase {name!r} inside phase {self.current_phase!r}")
        self.sample()  # closes the interval before the phase
        self.current_phase = name
        try:
            yield
        finally:
            self.sample()  # closes the phase's last interval
            self.current_phase = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            started = time.thread_time()
            self.accumulator.add(self._read_sample())
            self.sampler_cpu_s += time.thread_time() - started

    def _read_sample(self) -> Sample:
        phase = self.current_phase
        busy = parse_machine_busy(Path("/proc/stat").read_text(), self.ticks_per_s)
        procs: dict[int, ProcStat] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (text := _read(f"/proc/{entry}/stat")):
                proc = parse_stat(text, self.ticks_per_s)
                procs[proc.pid] = proc
        readings: dict[ProcKey, Reading] = {}
        for pid, group in classify(procs, self.driver, self.services).items():
            proc = procs[pid]
            status = _read(f"/proc/{pid}/status")
            readings[proc.key] = Reading(
                group=group,
                ppid=proc.ppid,
                own_s=proc.own_s,
                reaped_s=proc.reaped_s,
                memory=parse_status(status) if status else None,
            )
        return Sample(time.monotonic(), phase, busy, readings)

    def summary(self) -> dict[str, Any]:
        order = [DRIVER, SPARK_JVM, SPARK_WORKERS, CHILDREN, *self.services]
        with self._lock:
            result = self.accumulator.summary(order)
            return {
                "interval_s": self.interval_s,
                "services": dict(self.services),
                "sampler_cpu_s": round(self.sampler_cpu_s, 2),
                **result,
            }


# ------------------------------------------------------------------------------ rendering


def resource_table(groups: Mapping[str, Mapping[str, Any]], seconds: float) -> list[str]:
    """Markdown rows for one window's groups (header included)."""
    lines = [
        "| process group | processes | peak RSS (MiB) | mean RSS (MiB) | CPU (s) | cores |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, g in groups.items():
        peak = f"{g['peak_rss_mib']:,.0f}" if "peak_rss_mib" in g else "-"
        mean = f"{g['mean_rss_mib']:,.0f}" if "mean_rss_mib" in g else "-"
        cores = f"{g['cpu_s'] / seconds:.2f}" if seconds else "-"
        processes = g.get("processes", "-")
        lines.append(
            f"| {LABELS.get(name, name)} | {processes} | {peak} | {mean} | "
            f"{g['cpu_s']:.1f} | {cores} |"
        )
    return lines


def resource_section(summary: Mapping[str, Any]) -> list[str]:
    """A "Resource use" section for a benchmark's .md: the whole window, then each phase."""
    lines = [
        "## Resource use",
        "",
        f"Sampled from /proc every {summary['interval_s']} s over {summary['seconds']:.0f} s "
        f"({summary['samples']} samples; the sampler itself used {summary['sampler_cpu_s']:.1f} "
        "CPU-s of the driver's). `processes`: most at once; RSS of a group: anonymous pages "
        "summed (a fork's copy-on-write pages count in each process), shared and file-backed "
        "pages once; `cores`: CPU seconds / wall seconds. The services serve whatever else "
        "uses the shared stack meanwhile.",
        "",
        *resource_table(summary["groups"], summary["seconds"]),
    ]
    for name, phase in summary["phases"].items():
        lines += [
            "",
            f"Phase `{name}` ({phase['seconds']:.1f} s, {phase['samples']} samples):",
            "",
            *resource_table(phase["groups"], phase["seconds"]),
        ]
    return lines
