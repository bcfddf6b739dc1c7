# Two commands: `make run` serves the platform, `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | sha256sum | cut -c1-12)

.PHONY: setup run test system-deps bench check clean

$(STAMP): requirements.txt clients/cxr/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e clients/cxr
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

system-deps:
	@bash scripts/install_system_deps.sh

run: setup
	@bash scripts/run.sh

# Two pytest processes (xdist), one torch thread each: the fastest split of a 2-core CI machine.
# Each process gets its own test database and Redis database, named after this run (the shell's
# pid), so two runs on one machine do not share them; set DATABASE_TEST_NAME / TEST_REDIS_DB to choose.
# PostgreSQL names are unique per run; Redis has only databases 1-15 for tests, so runs take blocks of
# PYTEST_WORKERS consecutive databases, chosen by pid: two concurrent runs still collide with a chance
# of 1 in (15 / PYTEST_WORKERS) (1 in 7 by default). Give concurrent runs distinct TEST_REDIS_DB to be sure.
PYTEST_WORKERS ?= 2
_REDIS_BLOCK := $(if $(filter-out 0 1,$(PYTEST_WORKERS)),$(PYTEST_WORKERS),1)
test: setup system-deps
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} DATABASE_TEST_NAME=$${DATABASE_TEST_NAME:-test_cxr_$$$$} \
	TEST_REDIS_DB=$${TEST_REDIS_DB:-$$(( 1 + $(_REDIS_BLOCK) * ($$$$ % (15 / $(_REDIS_BLOCK))) ))} \
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

check: setup
	DJANGO_ENV=production DJANGO_SECRET_KEY=$$($(PY) -c 'import secrets;print(secrets.token_urlsafe(64))') \
	DJANGO_ALLOWED_HOSTS=example.org DATABASE_URL=sqlite:///var/check.sqlite3 CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \
	AUDIT_HMAC_KEY=$$($(PY) -c 'import secrets;print(secrets.token_urlsafe(48))') FILE_ENCRYPTION_KEYS=$$($(PY) -c 'from cryptography.fernet import Fernet;print(Fernet.generate_key().decode())') \
	EXPORT_SIGNING_KEY=$$($(PY) -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())') \
	$(PY) manage.py check --deploy --fail-level WARNING

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) var
