from django.conf import settings
from django.db import models


class Export(models.Model):
    """One DICOM export package of a cohort's screened images, built by a Celery task.

    Lifecycle (exports.services.TRANSITIONS): queued → building → ready → expired, or
    → failed (→ expired when its record is cleaned up). The zip lives in default storage
    under ``file_name`` until it expires.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    cohort = models.ForeignKey("generation.Cohort", on_delete=models.CASCADE, related_name="exports")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="exports")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    include_png = models.BooleanField(default=False)
    transfer_syntax = models.CharField(max_length=20, default="explicit")
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    image_count = models.PositiveIntegerField(default=0)
    file_name = models.CharField(max_length=500, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"export {self.pk} of cohort {self.cohort_id}"

    @property
    def percent(self) -> int:
        if self.status == self.Status.READY:
            return 100
        if not self.progress_total:
            return 0
        return min(100, round(100 * self.progress_done / self.progress_total))

    @property
    def download_name(self) -> str:
        return f"cxr-export-{self.cohort_id}-{self.pk}.zip"


class Installation(models.Model):
    """This deployment's identity, created once by the first ``migrate`` (a random UUID).

    Every DICOM UID and synthetic Patient ID an export writes is derived from it, so two
    deployments never hand a PACS the same UIDs for different images, whatever their settings.
    One row; restoring a database backup elsewhere keeps it, which is what re-exports need.
    """

    uid_root = models.UUIDField(unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"installation {self.uid_root}"

    @property
    def tag(self) -> str:
        """Eight hex digits that name this installation in Patient IDs."""
        return self.uid_root.hex[:8].upper()
