"""How the analyst notebooks are committed: valid, without outputs, and holding no logic of
their own (running them against a real lakehouse: tests/integration/test_notebooks.py)."""

from __future__ import annotations

import ast

import nbformat
import pytest

from lakehouse.config import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_cost_trends.ipynb",
        "02_service_patterns.ipynb",
        "03_anomalies_and_quality.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert (cell.outputs, cell.execution_count) == ([], None), cell.id


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_holds_no_logic_of_its_own(path) -> None:
    """Cells import the library and call it: no other imports, no functions, classes, loops,
    comprehensions or lambdas (that would be analysis the tests do not check)."""
    logic = (
        ast.FunctionDef,
        ast.ClassDef,
        ast.Lambda,
        ast.For,
        ast.While,
        ast.ListComp,
        ast.DictComp,
        ast.SetComp,
        ast.GeneratorExp,
    )
    notebook = nbformat.read(path, as_version=4)
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    for cell in cells:
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, logic), (cell.id, ast.dump(node)[:80])
            if isinstance(node, ast.Import):
                raise AssertionError(f"{cell.id}: import the library with from-import")
            if isinstance(node, ast.ImportFrom):
                assert node.module == "lakehouse", (cell.id, node.module)
    # the kernel's SparkSession (its own JVM) is stopped by the last cell
    assert cells[-1].source.strip() == "workspace.stop()"
