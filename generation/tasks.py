from celery import shared_task

from . import services


@shared_task(acks_late=True, ignore_result=True)
def generate_batch(batch_id: int) -> str:
    """One batch of images on the ``gpu`` queue (see settings.CELERY_TASK_ROUTES)."""
    outcome = services.run_batch(batch_id)
    if outcome == services.RETRY:
        services.retry_batch(batch_id)
    return outcome


@shared_task(ignore_result=True)
def reconcile_batches() -> int:
    """Periodic: send again every batch whose work can no longer happen on its own (its worker died,
    the broker never got it, or the broker lost it); fail the ones out of attempts."""
    return services.reconcile_batches()
