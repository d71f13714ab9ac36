"""Shared fixtures: one test config, one local stack and one SparkSession per test run.

Under pytest-xdist (`make test` runs two workers) each worker is a session of its own, with its
own SparkSession; the local stack is started once, by the controlling process, as soon as the
workers report that they collected integration tests, and stopped by it at the end. Tests that
share servers on fixed ports or a fixture that is expensive to build (the demo lakehouse) carry
`xdist_group("serving")`, so one worker runs all of them."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("LAKEHOUSE_ENV", "test")

from lakehouse import stack
from lakehouse.config import Config, load_config


@pytest.fixture(scope="session")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The `test` environment with a fresh warehouse folder for this run."""
    warehouse = tmp_path_factory.mktemp("warehouse")
    return dataclasses.replace(load_config("test"), warehouse=str(warehouse))


_stack_failure: list[str] = []
# The controlling process of an xdist run: whether it looked at the stack, and the stack it
# started (and must stop).
_controller: dict[str, object] = {"checked": False, "started": None}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:
    """xdist controller: start the stack before any integration test is scheduled, once,
    rather than letting two workers race to start it."""
    if _controller["checked"] or not any(i.startswith("tests/integration/") for i in ids):
        return
    _controller["checked"] = True
    config = load_config("test")
    if stack.all_reachable(config):
        return
    try:
        stack.up(config)
    except stack.StackError as exc:
        stack.down(config)
        pytest.exit(f"the local stack did not start: {exc}", returncode=3)
    _controller["started"] = config


def pytest_sessionfinish(session: pytest.Session) -> None:
    started = _controller["started"]
    if isinstance(started, Config):
        _controller["started"] = None
        stack.down(started)


@pytest.fixture(scope="session")
def local_stack(config: Config) -> Iterator[bool]:
    """Reuse the services when they all answer (whoever started them), else start the stack here
    and stop it when the run ends. Yields whether this run started it."""
    if _stack_failure:  # pytest retries a failed session fixture per test: fail fast instead
        pytest.fail(f"the local stack did not start (see the first error): {_stack_failure[0]}")
    started_here = not stack.all_reachable(config)
    if started_here:
        try:
            stack.up(config)
        except stack.StackError as exc:
            _stack_failure.append(str(exc).splitlines()[1] if "\n" in str(exc) else str(exc))
            stack.down(config)  # leave no half-started stack behind a failed run
            raise
    try:
        yield started_here
    finally:
        if started_here:
            stack.down(config)


@pytest.fixture(scope="session")
def spark(config: Config):
    from lakehouse.spark import build_spark, stop_spark

    session = build_spark(config, app_name="lakehouse-tests")
    try:
        yield session
    finally:
        stop_spark(session)


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A per-test folder under test-output/ for artefacts people look at (reports, plots)."""
    folder = Path(__file__).resolve().parents[1] / "test-output" / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
