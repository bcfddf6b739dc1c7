import hashlib
import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models

from cxr_platform.audit.seals import Sealed


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

    @property
    def credentials_needed(self) -> list[str]:
        """Required credentials, with the research plan added when the tier asks for one."""
        from .capabilities import RESEARCH_PLAN

        needed = list(self.required_credentials)
        if self.requires_research_plan and RESEARCH_PLAN not in needed:
            needed.append(RESEARCH_PLAN)
        return needed


class Profile(models.Model):
    """Who the researcher is, as a data-governance office needs to know it."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="profile")
    full_name = models.CharField(max_length=200, blank=True)
    institution = models.CharField(max_length=200, blank=True)
    position = models.CharField(max_length=150, blank=True)
    institutional_email = models.EmailField(blank=True)
    orcid = models.CharField("ORCID iD", max_length=19, blank=True)
    physionet_username = models.CharField("PhysioNet username", max_length=150, blank=True)
    research_plan = models.TextField(blank=True, help_text="What you will use the model and its outputs for.")
    updated_at = models.DateTimeField(auto_now=True)

    REQUIRED_FIELDS = ("full_name", "institution", "position", "institutional_email", "physionet_username")

    def __str__(self):
        return self.full_name or self.user.get_username()

    @property
    def is_complete(self) -> bool:
        return all(getattr(self, name).strip() for name in self.REQUIRED_FIELDS)


class PhysioNetAttestation(Sealed):
    """The user's statement that they are a credentialed PhysioNet user with MIMIC-CXR access,
    and the reviewer's record of having checked it. The platform has no link to PhysioNet."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="physionet_attestations")
    physionet_username = models.CharField(max_length=150)
    attested_at = models.DateTimeField()
    attested_ip = models.GenericIPAddressField(null=True, blank=True)
    checked_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="physionet_checks"
    )
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-attested_at"]

    def __str__(self):
        return f"{self.user} as {self.physionet_username}"


def _certificate_path(instance, filename):
    # Never the uploaded name: it is the user's text and tells nothing once encrypted.
    return f"certificates/{instance.user_id}/{uuid.uuid4().hex}.pdf.enc"


class TrainingCertificate(Sealed):
    """A CITI 'Data or Specimens Only Research' completion report, encrypted at rest."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="training_certificates")
    file = models.FileField(upload_to=_certificate_path, max_length=300)
    original_name = models.CharField(max_length=255)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, help_text="Of the plaintext PDF.")
    completed_on = models.DateField()
    expires_on = models.DateField()
    uploaded_at = models.DateTimeField()
    # A certificate counts only once a reviewer has read it and found the dates and the course right:
    # the dates are the researcher's own words until then.
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    rejected_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-uploaded_at"]

    def __str__(self):
        return f"CITI report of {self.user} (valid until {self.expires_on})"

    @property
    def review_status(self) -> str:
        if self.rejected_at:
            return "rejected"
        return "verified" if self.verified_at else "awaiting verification"


class Agreement(models.Model):
    """An agreement users sign, e.g. the MIMIC-CXR data use agreement as it applies to the model."""

    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True, help_text="Active agreements must be signed for the 'agreements' credential.")

    class Meta:
        ordering = ["title"]

    def __str__(self):
        return self.title

    @property
    def current_version(self):
        return self.versions.filter(published_at__isnull=False).order_by("-number").first()


class AgreementVersion(models.Model):
    """One text of an agreement. Published versions never change: their hash is what users sign."""

    agreement = models.ForeignKey(Agreement, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    text = models.TextField()
    sha256 = models.CharField(max_length=64, editable=False)
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["agreement", "-number"]
        constraints = [models.UniqueConstraint(fields=["agreement", "number"], name="agreement_version_number_unique")]

    def __str__(self):
        return f"{self.agreement.title} v{self.number}"

    @staticmethod
    def hash_text(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def save(self, *args, **kwargs):
        self.sha256 = self.hash_text(self.text)
        super().save(*args, **kwargs)


class AgreementSignature(Sealed):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="signatures")
    version = models.ForeignKey(AgreementVersion, on_delete=models.PROTECT, related_name="signatures")
    typed_name = models.CharField(max_length=200)
    text_sha256 = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-signed_at"]
        constraints = [models.UniqueConstraint(fields=["user", "version"], name="one_signature_per_version")]

    def __str__(self):
        return f"{self.typed_name} signed {self.version}"


class AccessRequest(models.Model):
    """A researcher's request for a tier. Its lifecycle is in ``access.workflow``."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SUBMITTED = "submitted", "Submitted"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        RESUBMITTED = "resubmitted", "Resubmitted"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="access_requests")
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="requests")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT, db_index=True)
    justification = models.TextField(help_text="Why you need this tier, and for which project.")
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True, help_text="Latest (re)submission.")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    # Each (re)submission is a new round; approvals count only within the current round.
    round = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.user} → {self.tier} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


OPEN_STATUSES = (
    AccessRequest.Status.DRAFT,
    AccessRequest.Status.SUBMITTED,
    AccessRequest.Status.CHANGES_REQUESTED,
    AccessRequest.Status.RESUBMITTED,
)


class Approval(models.Model):
    """One reviewer's approval in one review round; tiers may need several from different reviewers."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="approvals")
    reviewer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    round = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request", "reviewer", "round"], name="one_approval_per_round")]


class RequestEvent(models.Model):
    """The history of a request as the requester and reviewers see it."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=40)
    from_status = models.CharField(max_length=20)
    to_status = models.CharField(max_length=20)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]


class ReviewNote(models.Model):
    """Reviewers' internal notes on a request; never shown to the requester."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]


class AccessGrant(Sealed):
    """The right to use a tier, created when a reviewer approves a request."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="grants")
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="grants")
    request = models.OneToOneField(
        AccessRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="grant"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    granted_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-granted_at"]

    def __str__(self):
        return f"{self.user} · {self.tier}"
