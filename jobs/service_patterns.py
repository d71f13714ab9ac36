"""spark-submit entrypoint: gold.service_patterns, service_pair_counts and
service_pairs from silver. Incremental by default; --full rebuilds.

    jobs/submit.sh jobs/service_patterns.py [--env ENV] [--full]

Exit status: 0 done, 1 failed (the message says why), 2 bad arguments or configuration.
"""

from __future__ import annotations

import sys

from lakehouse.gold.jobs import submit_main

if __name__ == "__main__":
    sys.exit(submit_main("service_patterns"))
