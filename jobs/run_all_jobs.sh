#!/usr/bin/env bash
# The nightly gold batch with spark-submit, in dependency order; stops at the first failure and
# exits with its status.
#   jobs/run_all_jobs.sh [--env ENV] [--full]
# 1. cost_analysis      gold.plan_costs, gold.cost_trends
# 2. service_patterns   gold.service_patterns, gold.service_pair_counts, gold.service_pairs
# 3. anomaly_detection  train (promotes only a better model), then score gold.plan_anomalies
# One spark-submit runs all three (jobs/gold_jobs.py): a JVM start-up each would cost more than
# a nightly increment's work. One job at a time: jobs/<job>.py.
set -euo pipefail
jobs="$(cd "$(dirname "$0")" && pwd)"
echo "== $(date -u +%H:%M:%S) gold jobs" >&2
"$jobs/submit.sh" "$jobs/gold_jobs.py" "$@" || {
  status=$?
  echo "run_all_jobs: gold jobs failed (exit $status)" >&2
  exit "$status"
}
echo "run_all_jobs: all gold jobs done" >&2
