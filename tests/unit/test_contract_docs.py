"""docs/change-events.md lists exactly the reason codes the code can give, so a new rule
cannot land undocumented and a removed one cannot linger in the docs."""

from __future__ import annotations

import re
from pathlib import Path

from lakehouse.ingest.contract import CHECK_FAILED, SPARK_PARSE_MISMATCH
from lakehouse.ingest.snapshot import BAD_BOOKKEEPING
from lakehouse.plans.events import REASONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "change-events.md"


def test_the_reason_code_table_lists_every_reason_once() -> None:
    section = DOC.read_text().split("### Reason codes", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_-]+)` \|", section, re.M)
    codes = {*REASONS, CHECK_FAILED, SPARK_PARSE_MISMATCH, BAD_BOOKKEEPING}
    assert sorted(documented) == sorted(codes)
    assert len(documented) == len(set(documented))
