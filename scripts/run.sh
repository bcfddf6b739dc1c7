#!/usr/bin/env bash
# `make run`: the embedded default (SQLite, filesystem broker, local files, demo model
# and accounts), a Celery worker and the web server on http://127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export DJANGO_ENV="${DJANGO_ENV:-development}"
mkdir -p var/broker/queue var/broker/processed var/media var/models

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
  --schedule var/celerybeat-schedule >var/worker.log 2>&1 &
pids+=($!)
echo "Celery worker started (log: var/worker.log)"
$PY manage.py runserver 127.0.0.1:8000 &
pids+=($!)
echo "Serving on http://127.0.0.1:8000 — Ctrl-C stops everything."
wait -n "${pids[@]}"
