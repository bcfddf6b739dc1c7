from celery import shared_task

from .services import expire_lapsed_grants


@shared_task(name="access.tasks.expire_grants")
def expire_grants() -> int:
    """Periodic: expire lapsed grants (the policy also expires them lazily on the user's next request)."""
    return expire_lapsed_grants()
