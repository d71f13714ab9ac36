#!/usr/bin/env bash
# The nightly gold batch with spark-submit, in dependency order; stops at the first failure and
# exits with its status.
#   jobs/run_all_jobs.sh [--env ENV] [--full]
# 1. cost_analysis      gold.plan_costs, gold.cost_trends
# 2. service_patterns   gold.service_patterns, gold.service_pair_counts, gold.service_pairs
# 3. anomaly_detection  train (promotes only a better model), then score gold.plan_anomalies
set -euo pipefail
jobs="$(cd "$(dirname "$0")" && pwd)"
run() {
  echo "== $(date -u +%H:%M:%S) $*" >&2
  "$jobs/submit.sh" "$@" || { status=$?; echo "run_all_jobs: $1 failed (exit $status)" >&2; exit "$status"; }
}
run "$jobs/cost_analysis.py" "$@"
run "$jobs/service_patterns.py" "$@"
run "$jobs/anomaly_detection.py" --mode both "$@"
echo "run_all_jobs: all gold jobs done" >&2
