from django.conf import settings
from django.db import models


SYSTEM = "system"
ANONYMOUS = "anonymous"


class AuditEvent(models.Model):
    """One append-only, chained entry of the audit log.

    ``mac`` is HMAC-SHA-256 over the event's canonical content and the previous
    event's ``mac``, so rewriting history without the key is detectable.
    """

    sequence = models.BigIntegerField(unique=True, editable=False)
    occurred_at = models.DateTimeField(db_index=True, editable=False)
    # DO_NOTHING without a database constraint: deleting an account must neither
    # rewrite its events (which would break the chain, and the database refuses it)
    # nor be blocked by them. The id stays as it was sealed.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    # Kept alongside the FK so the event still says who acted if the account is removed.
    actor_username = models.CharField(max_length=150, blank=True, db_index=True)
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100, blank=True, db_index=True)
    target_id = models.CharField(max_length=100, blank=True, db_index=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    details = models.JSONField(default=dict, blank=True)
    previous_mac = models.CharField(max_length=64, editable=False)
    mac = models.CharField(max_length=64, unique=True, editable=False)

    class Meta:
        ordering = ["sequence"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    @property
    def actor_label(self) -> str:
        """Who acted, for people: the username; "anonymous" for a request from nobody signed in;
        "system" for an event no request caused (Celery workers, beat, management commands)."""
        if self.actor_username:
            return self.actor_username
        return ANONYMOUS if (self.ip_address or self.user_agent) else SYSTEM

    def __str__(self):
        return f"#{self.sequence} {self.action} by {self.actor_label}"
