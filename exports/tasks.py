from celery import shared_task

from . import delivery, services


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
    """Periodic: delete export packages past their expiry time; fail exports and deliveries whose worker
    died; send again exports whose build task never reached, or was lost by, the broker."""
    services.fail_stale_exports()
    services.requeue_lost_exports()
    delivery.fail_stale_deliveries()
    return services.expire_exports()


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=None)
def deliver_export(self, delivery_id: int) -> str:
    """Send a delivery's unsent instances to its PACS. A redelivered task (the worker died) carries
    on with what is not yet sent; while the first run is still saving progress, it waits."""
    try:
        return delivery.deliver(delivery_id)
    except delivery.DeliveryBusy as busy:
        raise self.retry(countdown=busy.retry_in) from None
