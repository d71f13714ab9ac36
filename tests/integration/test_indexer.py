"""The real-time search indexer against the real broker and Elasticsearch: a SIGKILL mid-bulk,
an Elasticsearch outage, documents the index refuses, a reindex while it keeps writing, and the
indexer as the stack supervises it."""

from __future__ import annotations

import copy
import dataclasses
import io as text_io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from lake_checks import assert_index_matches
from support import TcpProxy, drop_database, env_for, isolated_lakehouse, produce

from lakehouse import clients, io
from lakehouse.config import Config
from lakehouse.ingest import indexer, reindex, search
from lakehouse.ingest.operations import ingest, show_quarantine
from lakehouse.plans.scenario import disorder, event_history
from lakehouse.plans.simulate import simulate
from lakehouse.plans.store import PlanStore
from lakehouse.stack.apps import IndexerService
from lakehouse.stack.manager import running_pid, service_status, start_service
from lakehouse.stack.process import stop_process
from lakehouse.stack.supervisor import read_status
from lakehouse.tables import PLANS

pytestmark = pytest.mark.usefixtures("local_stack")

LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))


def _index_once(lake: Config) -> indexer.IndexerTotals:
    return indexer.Indexer(lake, report=lambda _: None).run(threading.Event(), once=True)


def _alias_targets(lake: Config) -> list[str]:
    es = clients.es_client(lake)
    try:
        return sorted(es.indices.get_alias(name=lake.elasticsearch.index))
    finally:
        es.close()


def test_indexer_sigkilled_mid_bulk_loses_nothing_and_duplicates_nothing(
    config: Config, tmp_path: Path
) -> None:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "ixkill")
    events, final = event_history(23, plans=150, changes=1500)
    produce(lake, [(e.key(), e.value()) for e in disorder(events, 23)])
    total = indexer.measure_lag(lake)
    assert total.records is None  # nothing committed yet

    # Small bulks, so the process is killed with some committed and some not.
    env = env_for(lake) | {"LAKEHOUSE_INDEXER_MAX_BATCH": "25"}
    process = subprocess.Popen(
        [LAKEHOUSE, "indexer"], env=env, start_new_session=True, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while (lag := indexer.measure_lag(lake).records) is None or lag > len(events) // 2:
            assert process.poll() is None, "indexer exited early:\n" + "".join(output)
            assert time.monotonic() < deadline, "no commit in time:\n" + "".join(output)
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    left = indexer.measure_lag(lake).records
    assert left is not None and 0 < left < len(events), f"the kill did not land mid-run: {left}"
    assert any(line.startswith("indexer: ") and "indexed" in line for line in output), output

    # The restart resumes from the committed offsets; batches the kill cut short are redone.
    resumed = _index_once(lake)
    assert resumed.records >= left
    assert indexer.measure_lag(lake).records == 0
    # One document per live plan at its final version, which is also its external version:
    # a redone write neither lost a change nor counted one twice.
    assert_index_matches(lake, final)


def test_outage_exits_without_committing_and_a_restart_catches_up(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "ixdown")
    proxy = TcpProxy(int(lake.elasticsearch.url.rsplit(":", 1)[1]))
    lake = dataclasses.replace(
        lake,
        elasticsearch=dataclasses.replace(lake.elasticsearch, url=f"http://127.0.0.1:{proxy.port}"),
        indexer=dataclasses.replace(lake.indexer, retry_timeout_s=3),
    )
    events, final = event_history(31, plans=20, changes=80)
    produce(lake, [(e.key(), e.value()) for e in events])
    proxy.up()
    search.ensure_index(lake)  # the index exists; then Elasticsearch "goes down"
    proxy.down()
    try:
        with pytest.raises(indexer.IndexerError, match=r"did not take the (alias|batch) for 3s: "):
            _index_once(lake)
        assert indexer.measure_lag(lake).records is None  # nothing acknowledged: nothing committed
        # Silver does not wait for the index: the ingest runs through the outage.
        assert ingest(spark, lake, once=True) == 0
        assert io.read_table(spark, lake, PLANS).count() == len(final)

        proxy.up()  # what the supervisor's restart meets once Elasticsearch is back
        assert _index_once(lake).records == len(events)
        assert indexer.measure_lag(lake).records == 0
        assert_index_matches(lake, final)
    finally:
        proxy.down()
        drop_database(lake)


# An index whose own limit some plans break: more nested services than it takes.
NESTED_LIMIT = 5


def test_refused_documents_are_dead_lettered_and_the_rest_indexed(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "ixrefuse")
    alias = lake.elasticsearch.index
    body = copy.deepcopy(search.INDEX_BODY)
    body["settings"]["index.mapping.nested_objects.limit"] = NESTED_LIMIT
    es = clients.es_client(lake)
    es.indices.create(index=f"{alias}-v1", body={**body, "aliases": {alias: {}}})
    try:
        events, final = event_history(41, plans=14, changes=20)
        positions = produce(lake, [(e.key(), e.value()) for e in events])
        first = _index_once(lake)

        too_big = {
            plan_id: state.version
            for plan_id, state in final.items()
            if state.document is not None
            and len(state.document["linkedPlanServices"]) > NESTED_LIMIT
        }
        assert 0 < len(too_big) < sum(s.document is not None for s in final.values())
        assert indexer.measure_lag(lake).records == 0  # refused documents do not hold it back
        assert_index_matches(lake, final, not_indexed=frozenset(too_big))

        letters = indexer.read_dead_letters(lake)
        assert sorted((d.index, d.operation, d.plan_id, d.version, d.status) for d in letters) == (
            sorted((alias, "index", p, v, 400) for p, v in too_big.items())
        )
        for letter in letters:
            assert letter.reason == indexer.INDEX_REFUSED
            assert "nested" in letter.error, letter.error
            assert (letter.partition, letter.offset) in positions
            assert letter.document is not None and letter.document["plan_id"] == letter.plan_id
        assert first.dead_letters >= len(too_big)

        # The same records again (a redelivery): dead letters keep one per document.
        produce(lake, [(e.key(), e.value()) for e in events[-5:]])
        _index_once(lake)
        assert len(indexer.read_dead_letters(lake)) == len(too_big)

        assert ingest(spark, lake, once=True) == 0  # silver is complete regardless
        shown = text_io.StringIO()
        assert show_quarantine(spark, lake, None, 3, shown) == 0
        assert f"indexer dead letters: {len(too_big):,} documents" in shown.getvalue()
        assert "status 400:" in shown.getvalue()
    finally:
        es.indices.delete(index=f"{alias}-v1", ignore_unavailable=True)
        es.close()
        drop_database(lake)


def test_reindex_during_live_indexing_ends_on_a_complete_index_at_the_latest_versions(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "reindex")
    events, final = event_history(43, plans=120, changes=700)
    cut = len(events) // 2
    before, during = events[:cut], events[cut:]
    live_at_cut = _live(before)
    # Reads through the alias may see fewer plans only by the deletes still to come.
    floor = len(live_at_cut) - sum(e.op == "d" for e in during)
    produce(lake, [(e.key(), e.value()) for e in before])
    assert ingest(spark, lake, once=True) == 0  # silver holds the first half
    # Written while the new index is built from silver, then while `-next` is on it.
    while_building, while_next = during[: len(during) // 2], during[len(during) // 2 :]
    stop, failures = threading.Event(), []
    seen: list[tuple[int, tuple[str, ...]]] = []
    batches: list[indexer.IndexedBatch] = []

    def keep_indexing() -> None:
        try:
            indexer.Indexer(lake, report=batches.append).run(stop)
        except BaseException as exc:  # reported to the test thread below
            failures.append(exc)

    def keep_writing() -> None:
        for start in range(0, len(while_building), 20):
            produce(lake, [(e.key(), e.value()) for e in while_building[start : start + 20]])
            time.sleep(0.05)

    def on_progress(line: str) -> None:
        if "the live indexer writes to it too" in line:
            writer.join(timeout=120)
            produce(lake, [(e.key(), e.value()) for e in while_next])
            _until(lambda: indexer.measure_lag(lake).records == 0, 60, failures)

    def keep_reading() -> None:
        es = clients.es_client(lake)
        try:
            while not stop.is_set():
                count = es.count(index=lake.elasticsearch.index)["count"]
                seen.append((count, tuple(_alias_targets(lake))))
                time.sleep(0.02)
        except BaseException as exc:  # reported to the test thread below
            failures.append(exc)
        finally:
            es.close()

    threads = [threading.Thread(target=keep_indexing, daemon=True)]
    threads[0].start()
    try:
        _until(lambda: indexer.measure_lag(lake).records == 0, 60, failures)
        old = _alias_targets(lake)
        _refresh(lake)  # what the indexer wrote is searchable before the reads begin
        threads.append(threading.Thread(target=keep_reading, daemon=True))
        threads[1].start()
        writer = threading.Thread(target=keep_writing, daemon=True)
        writer.start()
        result = reindex.reindex(spark, lake, on_progress)  # silver holds none of `during`
        _until(lambda: indexer.measure_lag(lake).records == 0, 60, failures)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not failures, failures
    assert old == [f"{lake.elasticsearch.index}-v1"]
    assert (result.index, result.previous) == (f"{lake.elasticsearch.index}-v2", tuple(old))
    assert result.documents == len(live_at_cut)  # silver's content: the first half
    assert _alias_targets(lake) == [result.index]
    next_alias = search.next_alias(lake)
    assert any(b.targets == (lake.elasticsearch.index, next_alias) for b in batches), batches
    assert_index_matches(lake, final)
    # Every read went to exactly one index, and none saw a partial one.
    assert seen and all(len(targets) == 1 for _, targets in seen)
    assert min(count for count, _ in seen) >= floor, (floor, min(seen))
    es = clients.es_client(lake)
    try:
        assert not es.indices.exists_alias(name=next_alias)
    finally:
        es.close()


def _refresh(lake: Config) -> None:
    es = clients.es_client(lake)
    try:
        es.indices.refresh(index=lake.elasticsearch.index)
    finally:
        es.close()


def _live(events: list) -> set[str]:
    state: dict[str, bool] = {}
    for event in sorted(events, key=lambda e: e.version):
        state[event.plan_id] = event.op != "d"
    return {plan for plan, alive in state.items() if alive}


def _until(condition, timeout_s: float, failures: list[BaseException]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert not failures, f"indexer failed: {failures[0]!r}"
        assert time.monotonic() < deadline, f"condition not met in {timeout_s}s"
        time.sleep(0.2)


def test_the_stack_supervises_the_indexer_and_store_writes_become_searchable(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = dataclasses.replace(
        isolated_lakehouse(config, str(tmp_path / "warehouse"), "ixstack"),
        state_dir=str(tmp_path / "state"),
    )
    for name, value in env_for(lake).items():  # the supervised process inherits them
        monkeypatch.setenv(name, value)
    service = IndexerService(lake)
    start_service(service, timeout_s=120, report=print)
    try:
        assert service_status(service).healthy
        with PlanStore.open(lake, batch_size=20) as store:
            simulate(store, plans=12, changes=20, seed=5)
            live = {doc["objectId"]: doc for doc in store.iter_live()}
        assert indexer.wait_caught_up(lake, timeout_s=120, progress=print) is not None
        _refresh(lake)
        es = clients.es_client(lake)
        try:
            hits = es.search(index=lake.elasticsearch.index, body={"size": 100})["hits"]["hits"]
        finally:
            es.close()
        assert {h["_id"]: h["_source"]["plan_type"] for h in hits} == {
            plan_id: doc["planType"] for plan_id, doc in live.items()
        }
        status = read_status(service.status_file)
        assert status is not None and (status.state, status.restarts) == ("running", 0)
    finally:
        pid = running_pid(service)
        if pid is not None:
            stop_process(pid, service.marker)
        drop_database(lake)
    assert "indexer: " in service.paths.log.read_text()
