from celery import shared_task

from . import services


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=None)
def build_export(self, export_id: int) -> str:
    """Build one export package into storage. A redelivered task waits while the first run holds the
    export's lease, and starts over only once that lease has lapsed (its worker died)."""
    try:
        return services.build_export(export_id)
    except services.ExportBusy as busy:
        raise self.retry(countdown=busy.retry_in) from None


@shared_task(ignore_result=True)
def expire_exports() -> int:
    """Periodic: delete export packages past their expiry time; fail exports whose worker died."""
    services.fail_stale_exports()
    return services.expire_exports()
