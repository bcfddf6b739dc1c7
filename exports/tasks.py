from celery import shared_task

from . import services


@shared_task(acks_late=True, ignore_result=True)
def build_export(export_id: int) -> str:
    """Build one export package into storage (a redelivered task after a worker crash starts over)."""
    return services.build_export(export_id)


@shared_task(ignore_result=True)
def expire_exports() -> int:
    """Periodic: delete export packages past their expiry time; fail exports whose worker died."""
    services.fail_stale_exports()
    return services.expire_exports()
