"""The Celery application, configured from Django settings (``CELERY_*``)."""

import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxr_platform.settings")

app = Celery("cxr_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Worker liveness (generation.workers): every worker writes its heartbeat to the database, which
# /api/v1/health and the cohort pages read without asking the broker.
@worker_ready.connect
def _start_worker_heartbeat(sender=None, **kwargs):
    from generation.workers import start_worker_heartbeat

    start_worker_heartbeat(sender)


@worker_shutdown.connect
def _stop_worker_heartbeat(sender=None, **kwargs):
    from generation.workers import stop_worker_heartbeat

    stop_worker_heartbeat()
