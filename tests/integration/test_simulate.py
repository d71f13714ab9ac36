"""`simulate` against the real store and broker: the topic alone rebuilds the store's state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import drop_database, isolated_source, read_topic

from lakehouse.cli import main
from lakehouse.config import Config
from lakehouse.plans.events import ChangeEvent
from lakehouse.plans.simulate import simulate
from lakehouse.plans.store import PlanStore


@pytest.fixture
def sources(config: Config, local_stack) -> Iterator[list[Config]]:
    made: list[Config] = []
    yield made
    for cfg in made:
        drop_database(cfg)


def replay_latest(records) -> dict[str, ChangeEvent]:
    """Highest version per plan, whatever the arrival order (the consumer contract)."""
    latest: dict[str, ChangeEvent] = {}
    for _, value, _, _ in records:
        event = ChangeEvent.from_dict(value)
        if event.plan_id not in latest or event.version > latest[event.plan_id].version:
            latest[event.plan_id] = event
    return latest


def test_replaying_the_topic_reproduces_the_store(sources, config):
    cfg = isolated_source(config, "replay")
    sources.append(cfg)
    with PlanStore.open(cfg, batch_size=100) as store:  # the batched path simulate uses
        summary = simulate(store, plans=150, changes=450, seed=3, delete_fraction=0.15)
        live = {doc["objectId"]: doc for doc in store.iter_live()}
        tombstoned = {
            raw["_id"] for raw in store.plans.find({"_lakehouse.deleted": True}, {"_id": 1})
        }
    records = read_topic(cfg)
    latest = replay_latest(list(reversed(records)))  # arrival order must not matter

    rebuilt = {pid: e.after for pid, e in latest.items() if e.op != "d"}
    assert rebuilt == live
    assert {pid for pid, e in latest.items() if e.op == "d"} == tombstoned
    assert summary.events_total == len(records) == 150 + 450
    assert summary.ops["delete"] > 0 and summary.ops["recreate"] > 0 and summary.ops["patch"] > 0

    # per plan, versions arrive complete and in order (one partition per key)
    by_plan: dict[str, list[int]] = {}
    for key, value, _, _ in sorted(records, key=lambda r: (r[2], r[3])):
        by_plan.setdefault(key, []).append(value["version"])
    assert all(versions == list(range(1, len(versions) + 1)) for versions in by_plan.values())


def test_same_seed_same_documents_and_events(sources, config):
    runs = []
    for _ in range(2):
        cfg = isolated_source(config, "determinism")
        sources.append(cfg)
        with PlanStore.open(cfg) as store:
            simulate(store, plans=40, changes=120, seed=9)
            final = list(store.iter_live())
        events = sorted((k, v["version"], v["op"], v["after"]) for k, v, _, _ in read_topic(cfg))
        runs.append((final, events))
    assert runs[0] == runs[1]


def test_cli_simulate_prints_a_summary(sources, config, monkeypatch, capsys):
    cfg = isolated_source(config, "cli")
    sources.append(cfg)
    monkeypatch.setenv("LAKEHOUSE_KAFKA_TOPIC", cfg.kafka.topic)
    monkeypatch.setenv("LAKEHOUSE_MONGO_DATABASE", cfg.mongo.database)
    argv = ["simulate", "--plans", "20", "--changes", "30", "--seed", "5"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "simulate: seed 5, 20 plans loaded, 30 changes"
    assert out[2].startswith("  events:     ") and out[2].endswith("(total 50)")
    assert len(read_topic(cfg)) == 50


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--plans", "0"])
    assert exit_info.value.code == 2
    assert "--plans: must be >= 1, got 0" in capsys.readouterr().err


def test_cli_plans_apply_and_get(sources, config, monkeypatch, capsys, tmp_path):
    import json

    from lakehouse.plans.generator import generate_plan

    cfg = isolated_source(config, "apply")
    sources.append(cfg)
    monkeypatch.setenv("LAKEHOUSE_KAFKA_TOPIC", cfg.kafka.topic)
    monkeypatch.setenv("LAKEHOUSE_MONGO_DATABASE", cfg.mongo.database)
    plan = generate_plan(21, 3).doc
    bad = dict(plan, planType="Platinum")
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    (tmp_path / "plan.json").write_text(json.dumps(plan))

    assert main(["plans", "apply", str(tmp_path / "bad.json")]) == 1
    err = capsys.readouterr().err
    assert "is not a valid plan; nothing was written" in err
    assert "planType: 'Platinum' is not one of" in err
    assert main(["plans", "get", plan["objectId"]]) == 1
    assert capsys.readouterr().err == f"lakehouse: plan {plan['objectId']!r} not found\n"

    assert main(["plans", "apply", str(tmp_path / "plan.json")]) == 0
    assert capsys.readouterr().out.startswith(f"plan {plan['objectId']}: op=c version=1 ")
    assert main(["plans", "apply", str(tmp_path / "plan.json")]) == 0  # again: a replace
    assert capsys.readouterr().out.startswith(f"plan {plan['objectId']}: op=u version=2 ")
    assert main(["plans", "get", plan["objectId"]]) == 0
    assert json.loads(capsys.readouterr().out) == plan
    assert [(v["op"], v["version"]) for _, v, _, _ in read_topic(cfg)] == [("c", 1), ("u", 2)]


def test_every_change_is_a_write_even_when_deletes_dominate(sources, config):
    cfg = isolated_source(config, "churn")
    sources.append(cfg)
    with PlanStore.open(cfg, batch_size=50) as store:
        summary = simulate(store, plans=4, changes=80, seed=13, delete_fraction=0.6)
        live = {doc["objectId"] for doc in store.iter_live()}
    records = read_topic(cfg)
    assert summary.events_total == len(records) == 4 + 80
    assert sum(summary.ops.values()) == 4 + 80
    assert summary.ops["delete"] > 10 and summary.ops["recreate"] > 10
    latest = replay_latest(records)
    assert {pid for pid, e in latest.items() if e.op != "d"} == live
