"""spark-submit entrypoint: train the plan anomaly detectors (MLflow)
and/or score gold.plan_anomalies.

    jobs/submit.sh jobs/anomaly_detection.py [--env ENV] [--full] [--mode train|score|both]

Exit status: 0 done, 1 failed (the message says why), 2 bad arguments or configuration.
"""

from __future__ import annotations

import sys

from lakehouse.gold.jobs import submit_main

if __name__ == "__main__":
    sys.exit(submit_main("anomaly_detection"))
