from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from cxr_platform.audit.services import record_event


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def _audit_password_change(sender, instance, created, **kwargs):
    if getattr(instance, "_password_changed", False):
        instance._password_changed = False
        if not created:
            record_event("auth.password_changed", actor=instance, target=instance)
