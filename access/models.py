from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A platform account. Researchers, reviewers (``is_staff``) and admins (``is_superuser``)."""

    email = models.EmailField("e-mail address", unique=True, null=True, blank=True)
    email_verified = models.BooleanField(default=False)

    def set_password(self, raw_password):
        super().set_password(raw_password)
        # Picked up by the post_save handler in access.signals to audit password changes.
        self._password_changed = True


class Tier(models.Model):
    """An access tier: what its holders may do, what they must show first, and their quotas.

    Tiers are data, edited by admins. ``capabilities`` lists names from
    ``access.capabilities``; ``required_credentials`` lists names from
    ``access.capabilities.CREDENTIALS``; ``quotas`` maps quota names to limits.
    """

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    capabilities = models.JSONField(default=list, blank=True)
    required_credentials = models.JSONField(default=list, blank=True)
    quotas = models.JSONField(default=dict, blank=True)
    # Empty means every model version that is not withdrawn.
    model_versions = models.ManyToManyField("registry.ModelVersion", blank=True, related_name="tiers")
    grant_duration_days = models.PositiveIntegerField(default=365)
    requires_research_plan = models.BooleanField(default=False)
    approvals_required = models.PositiveSmallIntegerField(default=1)
    ordering = models.PositiveSmallIntegerField(default=0)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["ordering", "name"]

    def __str__(self):
        return self.name


class AccessGrant(models.Model):
    """The right to use a tier, created when a reviewer approves a request."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="grants")
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="grants")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    granted_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-granted_at"]

    def __str__(self):
        return f"{self.user} · {self.tier}"
