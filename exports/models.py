from django.conf import settings
from django.core.exceptions import ValidationError
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
    # An API client's Idempotency-Key: a repeated request returns this export instead of a second one.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["owner", "idempotency_key"], name="one_export_per_idempotency_key",
                                               condition=models.Q(idempotency_key__isnull=False))]

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


class Destination(models.Model):
    """A PACS that researchers may push ready exports to, registered by an admin.

    ``dimse``: DICOM C-STORE to ``called_ae_title`` at ``host``:``port``, as ``calling_ae_title``.
    ``stow``: DICOMweb STOW-RS to ``base_url`` (…/studies is appended), with optional HTTP basic
    credentials. The password is only ever stored Fernet-encrypted (access.encryption).
    """

    class Kind(models.TextChoices):
        DIMSE = "dimse", "DICOM C-STORE"
        STOW = "stow", "DICOMweb STOW-RS"

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True, help_text="Shown to researchers, e.g. where it is.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    called_ae_title = models.CharField("called AE title", max_length=16, blank=True)
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    calling_ae_title = models.CharField("our calling AE title", max_length=16, blank=True, default="CXRPLATFORM")
    base_url = models.URLField("DICOMweb base URL", max_length=500, blank=True,
                               help_text="e.g. https://pacs.example.org/dicom-web")
    username = models.CharField(max_length=150, blank=True)
    password_encrypted = models.BinaryField(blank=True, default=b"", editable=False)
    allowed_users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="pacs_destinations")
    open_to_all_exporters = models.BooleanField(
        default=False, help_text="Anyone holding the Export tier may use it, not only the allowed users.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        from .pacs import ae_title_problem

        errors = {}
        if self.kind == self.Kind.DIMSE:
            for name in ("called_ae_title", "host", "port"):
                if not getattr(self, name):
                    errors[name] = "Needed for DICOM C-STORE."
            for name in ("called_ae_title", "calling_ae_title"):
                problem = getattr(self, name) and ae_title_problem(getattr(self, name))
                if problem:
                    errors[name] = problem
            if self.port is not None and not 0 < self.port < 65536:
                errors["port"] = "A TCP port is between 1 and 65535."
        elif self.kind == self.Kind.STOW and not self.base_url:
            errors["base_url"] = "Needed for DICOMweb STOW-RS."
        if errors:
            raise ValidationError(errors)

    @property
    def address(self) -> str:
        if self.kind == self.Kind.DIMSE:
            return f"{self.called_ae_title}@{self.host}:{self.port}"
        return self.base_url

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)


class Delivery(models.Model):
    """One push of a ready export to a destination (exports.delivery.TRANSITIONS):
    queued → sending → sent | partial | failed; partial / failed → queued on retry."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        PARTIAL = "partial", "Partly sent"
        FAILED = "failed", "Failed"

    export = models.ForeignKey(Export, on_delete=models.CASCADE, related_name="deliveries")
    destination = models.ForeignKey(Destination, on_delete=models.PROTECT, related_name="deliveries")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                     related_name="pacs_deliveries")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    instance_count = models.PositiveIntegerField(default=0)
    sent_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the whole run stopped (e.g. the association was refused).")
    runs = models.PositiveIntegerField(default=0)
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"

    def __str__(self):
        return f"delivery {self.pk} of export {self.export_id} to {self.destination}"

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.SENDING)

    @property
    def can_retry(self) -> bool:
        return self.status in (self.Status.PARTIAL, self.Status.FAILED)

    @property
    def percent(self) -> int:
        if not self.instance_count:
            return 100 if self.status == self.Status.SENT else 0
        return min(100, round(100 * (self.sent_count + self.failed_count) / self.instance_count))


class DeliveryInstance(models.Model):
    """One DICOM instance of a delivery. ``sent`` only once the destination acknowledged it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="instances")
    sop_instance_uid = models.CharField(max_length=64)
    path = models.CharField(max_length=300, help_text="The file's path inside the package.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True, help_text="Why it failed; for a sent instance, a warning the PACS gave.")
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "path"]
        constraints = [models.UniqueConstraint(fields=["delivery", "sop_instance_uid"],
                                               name="exports_delivery_instance_unique_uid")]
        indexes = [models.Index(fields=["delivery", "status"], name="exports_delivery_instance_st")]

    def __str__(self):
        return f"{self.sop_instance_uid} ({self.status})"
