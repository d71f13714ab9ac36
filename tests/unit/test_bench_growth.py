"""bench/gold_growth.py: the growth exponent of the gold stages' cost."""

from __future__ import annotations

import pytest
from gold_growth import growth, growth_exponent


def test_exponent_of_exact_power_laws() -> None:
    sizes = [10_000.0, 100_000.0, 1_000_000.0]
    assert growth_exponent(sizes, [2 * n**0.5 for n in sizes]) == pytest.approx(0.5)
    assert growth_exponent(sizes, [1e-6 * n for n in sizes]) == pytest.approx(1.0)
    assert growth_exponent(sizes, [7.0, 7.0, 7.0]) == pytest.approx(0.0)


def test_exponent_needs_two_sizes() -> None:
    with pytest.raises(ValueError, match="two sizes"):
        growth_exponent([10.0, 10.0], [1.0, 2.0])


def _run(plans: int, full: dict[str, float], incremental: dict[str, float]) -> dict:
    return {
        "plans": plans,
        "full": {stage: {"seconds": s} for stage, s in full.items()},
        "incremental": {stage: {"seconds": s} for stage, s in incremental.items()},
    }


def test_growth_per_side_and_stage_sorted_by_size() -> None:
    runs = [
        _run(1000, {"a": 10.0, "b": 1.0}, {"a": 1.0, "b": 1.0}),  # given out of order
        _run(10, {"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1.0}),
        _run(100, {"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1.0}),
    ]
    assert growth(runs) == {
        "plans": [10, 100, 1000],
        "full": {
            "a": {"seconds": [1.0, 1.0, 10.0], "exponent": 0.5, "exponent_largest": 1.0},
            "b": {"seconds": [1.0, 1.0, 1.0], "exponent": 0.0, "exponent_largest": 0.0},
            "all": {"seconds": [2.0, 2.0, 11.0], "exponent": 0.37, "exponent_largest": 0.74},
        },
        "incremental": {
            "a": {"seconds": [1.0, 1.0, 1.0], "exponent": 0.0, "exponent_largest": 0.0},
            "b": {"seconds": [1.0, 1.0, 1.0], "exponent": 0.0, "exponent_largest": 0.0},
            "all": {"seconds": [2.0, 2.0, 2.0], "exponent": 0.0, "exponent_largest": 0.0},
        },
    }
