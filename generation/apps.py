from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Synthetic cohort generation"
    # The reconciler's beat entry is in settings.CELERY_BEAT_SCHEDULE ("generation-reconcile-batches").
