"""Authentication and admin events, recorded from Django's own signals."""

from django.contrib.admin.models import LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver

from .services import record_event


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    record_event("auth.login", actor=user, target=user, request=request)


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        record_event("auth.logout", actor=user, target=user, request=request)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    username = str(credentials.get("username", ""))[:150]
    record_event("auth.login_failed", details={"username": username}, request=request)


@receiver(post_save, sender=LogEntry)
def _admin_change(sender, instance, created, **kwargs):
    if not created:
        return
    action = {1: "admin.add", 2: "admin.change", 3: "admin.delete"}.get(instance.action_flag, "admin.action")
    record_event(
        action,
        actor=instance.user,
        target=(instance.content_type.model if instance.content_type else "", instance.object_id or ""),
        details={"object": instance.object_repr, "change": instance.get_change_message()},
    )
