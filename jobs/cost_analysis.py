"""spark-submit entrypoint: gold.plan_costs and gold.cost_trends from silver.
Incremental by default; --full rebuilds.

    jobs/submit.sh jobs/cost_analysis.py [--env ENV] [--full]

Exit status: 0 done, 1 failed (the message says why), 2 bad arguments or configuration.
"""

from __future__ import annotations

import sys

from lakehouse.gold.jobs import submit_main

if __name__ == "__main__":
    sys.exit(submit_main("cost_analysis"))
