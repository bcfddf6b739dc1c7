from django.conf import settings
from django.db import models


class ScreeningIndex(models.Model):
    """The training-set index of one model version (files in ``directory``, see screening.engine).

    Lifecycle: building → ready, or building → failed. A rebuild moves a ready index back to
    building; while an index is not ready, no image of that model version can pass screening.
    """

    class Status(models.TextChoices):
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    TRANSITIONS = {
        Status.BUILDING: {Status.READY, Status.FAILED, Status.BUILDING},
        Status.READY: {Status.BUILDING},
        Status.FAILED: {Status.BUILDING},
    }

    model_version = models.OneToOneField("registry.ModelVersion", on_delete=models.CASCADE,
                                         related_name="screening_index")
    directory = models.CharField(max_length=1024, help_text="Absolute path of the index files.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.BUILDING, db_index=True)
    train_source = models.CharField(max_length=1024, blank=True)
    holdout_source = models.CharField(max_length=1024, blank=True)
    train_count = models.PositiveIntegerField(default=0)
    holdout_count = models.PositiveIntegerField(default=0)
    threshold = models.FloatField(null=True, blank=True, help_text="Stage A decision threshold (fused score).")
    stage_b_threshold = models.FloatField(null=True, blank=True)
    stage_b_sha256 = models.CharField(max_length=64, blank=True)
    # What the holdout calibration measured (see engine.threshold_for): shown to admins.
    calibration = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    built_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    built_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "screening indexes"

    def __str__(self):
        return f"Screening index of {self.model_version} ({self.status})"


class ScreeningRecord(models.Model):
    """The screening of one synthetic image: scores, best training match and the decision.

    ``seal`` is an HMAC (keyed from AUDIT_HMAC_KEY, see screening.sealing) over the verdict and the
    review state, written with them; ``verify_screening_seals`` reports every record whose fields
    no longer match it. A flagged record waits for privacy review (``review_status`` pending) and a
    privacy reviewer confirms it or releases it (screening.services.confirm_quarantined /
    release_quarantined): ``pending → confirmed``, ``pending → released``, ``released → confirmed``.
    """

    class Decision(models.TextChoices):
        PASSED = "passed", "Passed"
        MEMORIZED = "memorized", "Flagged: near-copy of a training image"
        DUPLICATE = "duplicate", "Flagged: near-duplicate within the cohort"

    class Review(models.TextChoices):
        NOT_NEEDED = "", "Not needed (passed)"
        PENDING = "pending", "Waiting for privacy review"
        CONFIRMED = "confirmed", "Confirmed by a privacy reviewer"
        RELEASED = "released", "Released by a privacy reviewer (false positive)"

    REVIEW_TRANSITIONS = {
        Review.PENDING: {Review.CONFIRMED, Review.RELEASED},
        Review.RELEASED: {Review.CONFIRMED},
        Review.CONFIRMED: set(),
        Review.NOT_NEEDED: set(),
    }

    image = models.OneToOneField("generation.SyntheticImage", on_delete=models.CASCADE, related_name="screening")
    cohort = models.ForeignKey("generation.Cohort", on_delete=models.CASCADE, related_name="screening_records")
    index = models.ForeignKey(ScreeningIndex, on_delete=models.PROTECT, related_name="records")
    decision = models.CharField(max_length=20, choices=Decision.choices, db_index=True)
    flagged = models.BooleanField(default=False, db_index=True)
    score = models.FloatField(help_text="Stage A fused similarity to the closest training image.")
    threshold = models.FloatField(help_text="The Stage A threshold in force when the image was screened.")
    holdout_score = models.FloatField(null=True, blank=True, help_text="The same score against the holdout.")
    best_match = models.IntegerField(null=True, blank=True, help_text="Position of the matched training image.")
    best_match_path = models.CharField(max_length=1024, blank=True)
    exact_match = models.BooleanField(default=False)
    stage_scores = models.JSONField(default=dict, blank=True)
    duplicate_of = models.ForeignKey("generation.SyntheticImage", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    duplicate_similarity = models.FloatField(null=True, blank=True)
    # 32×32 standardised thumbnail (float16 bytes): compared with later images of the cohort.
    fingerprint = models.BinaryField(blank=True, default=b"")
    reason = models.TextField(blank=True)
    seconds = models.FloatField(default=0.0)
    review_status = models.CharField(max_length=20, choices=Review.choices, blank=True, default="", db_index=True)
    review_reason = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    seal = models.CharField(max_length=80, blank=True, editable=False,
                            help_text="HMAC over the verdict and review fields (screening.sealing).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["cohort", "decision"])]

    def __str__(self):
        return f"Screening of image {self.image_id}: {self.decision}"
