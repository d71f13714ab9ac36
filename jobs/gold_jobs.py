"""spark-submit entrypoint: every gold job in dependency order, in one session (what
jobs/run_all_jobs.sh runs): cost_analysis, service_patterns, then anomaly_detection (train,
promoting only a better model, then score). Incremental by default; --full rebuilds. Stops at
the first failure.

    jobs/submit.sh jobs/gold_jobs.py [--env ENV] [--full]

Exit status: 0 done, 1 failed (the message says which job and why), 2 bad arguments or
configuration.
"""

from __future__ import annotations

import sys

from lakehouse.gold.jobs import submit_main

if __name__ == "__main__":
    sys.exit(submit_main("all"))
