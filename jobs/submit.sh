#!/usr/bin/env bash
# Run a job with spark-submit and the project's Spark settings (jars, Delta, master, memory).
#   jobs/submit.sh jobs/smoke.py [job args...]
# The settings come from conf/ (LAKEHOUSE_ENV, LAKEHOUSE_SPARK_MASTER, ... apply), so spark-submit
# starts its JVM with every connector jar on the driver's classpath.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${LAKEHOUSE_VENV:-$here/.venv}"
if [ $# -lt 1 ]; then
  echo "usage: jobs/submit.sh JOB.py [job args...]" >&2
  exit 2
fi
mapfile -t submit_args < <("$venv/bin/python" -m lakehouse.spark --submit-args)
case "${submit_args[1]}" in
  local* | spark://127.0.0.1:* | spark://localhost:*)
    # a master on this machine (local mode or `lakehouse stack up --cluster`): driver, block
    # manager and UI listen on loopback only, where the local executors reach them
    export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}" ;;
esac
# The driver always runs the project's virtualenv (the jobs import lakehouse from it). Executors
# run PYSPARK_PYTHON: the same path is right on this machine; on a real cluster point it at the
# executors' Python (docs/scale-out.md).
# Spark's JVM logging before the job applies `spark.log_level` (conf/spark/log4j2.properties).
export SPARK_CONF_DIR="${SPARK_CONF_DIR:-$here/conf/spark}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$venv/bin/python}"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$venv/bin/python}"
exec "$venv/bin/spark-submit" "${submit_args[@]}" "$@"
