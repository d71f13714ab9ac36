"""Shared fixtures: one test config, one local stack and one SparkSession per test run."""

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
