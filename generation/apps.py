from django.apps import AppConfig
from django.conf import settings


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Synthetic cohort generation"

    def ready(self):
        # The reconciler runs wherever beat runs; its period is well under the stale threshold.
        from cxr_platform.celery import app

        app.conf.beat_schedule = {
            **(app.conf.beat_schedule or {}),
            "generation-reconcile-batches": {
                "task": "generation.tasks.reconcile_batches",
                "schedule": float(getattr(settings, "GENERATION_RECONCILE_SECONDS", 60)),
            },
        }
