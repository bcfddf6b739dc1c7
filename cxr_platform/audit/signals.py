"""Authentication and admin events, recorded from Django's own signals."""

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry, LogEntryManager
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


def _record_admin_entry(entry: LogEntry) -> None:
    action = {ADDITION: "admin.add", CHANGE: "admin.change", DELETION: "admin.delete"}.get(entry.action_flag, "admin.action")
    record_event(
        action,
        actor=entry.user,
        target=(entry.content_type.model if entry.content_type else "", entry.object_id or ""),
        details={"object": entry.object_repr, "change": entry.get_change_message()},
    )


@receiver(post_save, sender=LogEntry)
def _admin_change(sender, instance, created, **kwargs):
    if created:
        _record_admin_entry(instance)


_log_actions = LogEntryManager.log_actions


def _log_actions_audited(self, *args, **kwargs):
    # The admin logs a bulk action on several objects (e.g. "delete selected")
    # with bulk_create, which sends no post_save: audit those entries here.
    entries = _log_actions(self, *args, **kwargs)
    if isinstance(entries, list) and len(entries) > 1:
        for entry in entries:
            _record_admin_entry(entry)
    return entries


LogEntryManager.log_actions = _log_actions_audited
