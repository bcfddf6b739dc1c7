#!/usr/bin/env bash
# `make run`: the embedded default (SQLite, filesystem broker, local files, demo model
# and accounts), a Celery worker and the web server on http://127.0.0.1:${PORT:-8000}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT="${PORT:-8000}"
VAR_DIR="${CXR_VAR_DIR:-var}"
export DJANGO_ENV="${DJANGO_ENV:-development}"
mkdir -p "$VAR_DIR/broker/queue" "$VAR_DIR/broker/processed" "$VAR_DIR/broker/control" "$VAR_DIR/media" "$VAR_DIR/models"

$PY manage.py migrate --no-input
$PY manage.py seed_demo

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo "Stopping worker and web server…"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

.venv/bin/celery -A cxr_platform worker -B -Q default,gpu --concurrency 1 --loglevel INFO \
  --schedule "$VAR_DIR/celerybeat-schedule" >"$VAR_DIR/worker.log" 2>&1 &
pids+=($!)
echo "Celery worker started (queues default and gpu, log: $VAR_DIR/worker.log)"
$PY manage.py runserver "127.0.0.1:$PORT" &
pids+=($!)
echo "Serving on http://127.0.0.1:$PORT — Ctrl-C stops everything."
# Returns as soon as either process ends; the EXIT trap then stops the other.
wait -n "${pids[@]}"
