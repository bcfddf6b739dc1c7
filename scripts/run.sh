#!/usr/bin/env bash
# `make run`: the embedded default (SQLite, filesystem broker, local files, demo model
# and accounts), a Celery worker and the web server on http://127.0.0.1:${PORT:-8000}.
# Set-up output goes to $VAR_DIR/setup.log; the terminal gets a short summary.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT="${PORT:-8000}"
VAR_DIR="${CXR_VAR_DIR:-var}"
export DJANGO_ENV="${DJANGO_ENV:-development}"
# Links in e-mails point where this server listens, unless the operator says otherwise.
export SITE_URL="${SITE_URL:-http://127.0.0.1:$PORT}"
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"
mkdir -p "$VAR_DIR/broker/queue" "$VAR_DIR/broker/processed" "$VAR_DIR/broker/control" "$VAR_DIR/media" "$VAR_DIR/models"
SETUP_LOG="$VAR_DIR/setup.log"
ACCOUNTS="$VAR_DIR/demo-accounts.txt"

echo "Setting up (database, demo model, screening index; details in $SETUP_LOG)…"
if ! { $PY manage.py migrate --no-input && $PY manage.py seed_demo; } >"$SETUP_LOG" 2>&1; then
  tail -n 30 "$SETUP_LOG" >&2
  echo "Set-up failed; the whole log is $SETUP_LOG" >&2
  exit 1
fi
# Passwords are only printed when an account is created: keep them (owner-readable) for later runs.
touch "$ACCOUNTS" && chmod 600 "$ACCOUNTS"
sed -n "s/^Demo account '\([a-z]*\)' created with password: \(.*\)$/\1 \2/p" "$SETUP_LOG" >>"$ACCOUNTS"

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

password() { awk -v u="$1" '$1 == u { p = $2 } END { print (p ? p : "(set at an earlier run; see " FILENAME ")") }' "$ACCOUNTS"; }
cat <<EOF

  cxr-platform is running at http://127.0.0.1:$PORT

  Demo accounts (user / password):
    researcher  $(password researcher)   approved for the Generate and Export tiers
    reviewer    $(password reviewer)   reviews access requests (sets up two-factor at first visit)
    admin       $(password admin)   administrator (/admin/)
  Passwords are kept in $ACCOUNTS.

  E-mails (address verification, decisions) are printed in this terminal, below.
  Links in e-mails point to $SITE_URL.
  Worker log: $VAR_DIR/worker.log    Set-up log: $SETUP_LOG
  Ctrl-C stops everything.

EOF
$PY manage.py runserver --skip-checks "127.0.0.1:$PORT" &
pids+=($!)
echo "Serving on http://127.0.0.1:$PORT — Ctrl-C stops everything."
# Returns as soon as either process ends; the EXIT trap then stops the other.
wait -n "${pids[@]}"
