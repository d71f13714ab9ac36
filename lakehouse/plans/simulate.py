"""`lakehouse simulate`: load N generated plans, then apply M random changes through the store.

Every write goes through `PlanStore`, so each one is a real document write plus a change event.
The run is deterministic for a seed against an empty database (same documents, same changes).
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from lakehouse.plans.generator import generate_plan, iter_plans, random_change
from lakehouse.plans.store import PlanStore

Progress = Callable[[str, int, int, float], None]


@dataclass
class SimulationSummary:
    plans: int
    changes: int
    seed: int
    ops: Counter[str] = field(default_factory=Counter)  # load, patch, replace, delete, recreate
    events: Counter[str] = field(default_factory=Counter)  # c, u, d
    anomalies: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def events_total(self) -> int:
        return sum(self.events.values())

    @property
    def events_per_s(self) -> float:
        return self.events_total / self.elapsed_s if self.elapsed_s else 0.0

    def render(self) -> str:
        lines = [
            f"simulate: seed {self.seed}, {self.plans} plans loaded, {self.changes} changes",
            "  operations: " + _counts(self.ops),
            "  events:     " + _counts(self.events) + f" (total {self.events_total})",
            f"  throughput: {self.events_per_s:,.0f} events/s over {self.elapsed_s:.1f}s",
            "  anomalies injected: " + (_counts(self.anomalies) or "none"),
        ]
        return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counter.items()))


def simulate(
    store: PlanStore,
    plans: int,
    changes: int,
    seed: int,
    rate: float | None = None,
    delete_fraction: float = 0.1,
    anomaly_rate: float = 0.02,
    progress: Progress | None = None,
) -> SimulationSummary:
    """Load `plans` plans then apply `changes` changes, at most `rate` writes/s if given."""
    if plans < 1 or changes < 0:
        raise ValueError("--plans must be >= 1 and --changes >= 0")
    if not 0.0 <= delete_fraction < 1.0:
        raise ValueError("--delete-fraction must be in [0, 1)")
    if rate is not None and rate <= 0:
        raise ValueError("--rate must be > 0 writes/s")

    summary = SimulationSummary(plans=plans, changes=changes, seed=seed)
    pacer = _Pacer(rate)
    started = time.monotonic()
    live: list[str] = []
    deleted: list[str] = []
    index_of: dict[str, int] = {}

    for n, generated in enumerate(iter_plans(seed, plans, anomaly_rate=anomaly_rate), start=1):
        plan_id = generated.doc["objectId"]
        pacer.wait()
        # against a populated database (a re-run) the same plan gets a new version
        result = store.upsert(generated.doc)
        summary.events[result.event.op] += 1
        summary.ops["load"] += 1
        if generated.anomaly:
            summary.anomalies[generated.anomaly] += 1
        live.append(plan_id)
        index_of[plan_id] = n - 1
        if progress:
            progress("load", n, plans, time.monotonic() - started)

    rng = random.Random(seed)
    keep = 1.0 - delete_fraction
    weights = (0.75 * keep, 0.25 * keep, delete_fraction)
    for n in range(1, changes + 1):
        pacer.wait()
        # Re-create as often as plans get deleted, so the live population stays stable and every
        # change is a real write (with no live plan left, a re-create is the only change).
        if deleted and (not live or rng.random() < delete_fraction):
            plan_id = deleted.pop(rng.randrange(len(deleted)))
            doc = generate_plan(seed, index_of[plan_id], anomaly_rate=anomaly_rate).doc
            result = store.create(doc)
            live.append(plan_id)
            summary.ops["recreate"] += 1
        else:
            position = rng.randrange(len(live))
            plan_id = live[position]
            current = store.get(plan_id)
            assert current is not None, f"{plan_id} is live in the simulation but not in the store"
            change = random_change(rng, current, weights=weights)
            if change.kind == "delete":
                result = store.delete(plan_id)
                live[position] = live[-1]
                live.pop()
                deleted.append(plan_id)
            elif change.kind == "replace":
                assert change.document is not None
                result = store.replace(plan_id, change.document)
            else:
                assert change.patch is not None
                result = store.patch(plan_id, change.patch)
            summary.ops[change.kind] += 1
        summary.events[result.event.op] += 1
        if progress:
            progress("change", n, changes, time.monotonic() - started)

    store.flush()  # throughput counts only events the broker confirmed
    summary.elapsed_s = time.monotonic() - started
    return summary


class _Pacer:
    """Spaces writes evenly to hold a target rate (no bursts after a slow write)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next_at = time.monotonic()

    def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if now < self.next_at:
            time.sleep(self.next_at - now)
        self.next_at = max(self.next_at, now) + self.interval


def terminal_progress(stream=sys.stderr) -> Progress:
    """A one-line progress bar, redrawn in place on a terminal, every 10% otherwise."""
    interactive = stream.isatty()
    last_decile: dict[str, int] = {}

    def report(phase: str, done: int, total: int, elapsed: float) -> None:
        decile = done * 10 // max(total, 1)
        if not interactive and last_decile.get(phase) == decile and done != total:
            return
        last_decile[phase] = decile
        width = 30
        filled = width * done // max(total, 1)
        bar = "#" * filled + "." * (width - filled)
        rate = done / elapsed if elapsed else 0.0
        line = f"{phase:>6} [{bar}] {done}/{total} ({rate:,.0f}/s)"
        if interactive:
            stream.write("\r" + line + ("\n" if done == total else ""))
        else:
            stream.write(line + "\n")
        stream.flush()

    return report
