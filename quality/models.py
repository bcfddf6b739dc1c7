from django.conf import settings
from django.db import models


class QCModel(models.Model):
    """A quality-control classifier registered with a model version (``register_qc_model``).

    A local TorchScript file whose SHA-256 was checked at registration and is checked again before each
    use; it takes ``(N, 1, input_size, input_size)`` float images normalised as ``(x / 255 - mean) / std``
    and returns one value per label (``labels``): logits of the classes for sex, race and view (softmax),
    logits of each finding (sigmoid), or the age in years (one value). The image passes when the
    requested class has at least ``threshold`` probability, when each finding's probability is on the
    requested side of ``threshold``, or when the predicted age is within ``threshold`` years.
    """

    class Predicts(models.TextChoices):
        SEX = "sex", "Sex"
        AGE = "age", "Age"
        RACE = "race", "Race"
        VIEW = "view", "View"
        FINDINGS = "findings", "Findings"
        FEATURES = "features", "Features (an encoder for fidelity and diversity)"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    model_version = models.ForeignKey("registry.ModelVersion", on_delete=models.CASCADE, related_name="qc_models")
    name = models.SlugField(max_length=100)
    path = models.CharField(max_length=1024, help_text="Absolute path of the TorchScript file.")
    sha256 = models.CharField(max_length=64)
    predicts = models.CharField(max_length=20, choices=Predicts.choices)
    labels = models.JSONField(default=list, help_text="One per output, e.g. [\"F\", \"M\"] or finding keys.")
    input_size = models.PositiveIntegerField()
    mean = models.FloatField(default=0.5)
    std = models.FloatField(default=0.5)
    threshold = models.FloatField()
    # An encoder (predicts "features"): its output size, and the features of real radiographs it is compared
    # with (a .npy file, features only, like the screening index), checked by hash before use.
    feature_dim = models.PositiveIntegerField(default=0)
    reference_path = models.CharField(max_length=1024, blank=True)
    reference_sha256 = models.CharField(max_length=64, blank=True)
    reference_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    registered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    registered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_version", "name"]
        constraints = [models.UniqueConstraint(fields=["model_version", "name"], name="unique_qc_model_name")]
        verbose_name = "QC model"

    def __str__(self):
        return f"{self.name} ({self.predicts}) for {self.model_version}"


class QualityVerdict(models.Model):
    """The quality control of one synthetic image: every check's result and what was done about it.

    ``checks`` holds one entry per check: ``{"name", "kind" (builtin or model), "status" (passed, failed
    or unavailable), "reason", "value", "threshold"}``. ``decision`` is what the pipeline did: passed,
    regenerated (a fresh seed follows), delivered flagged or dropped (after the last attempt, by the
    cohort's policy).
    """

    class Decision(models.TextChoices):
        PASSED = "passed", "Passed"
        REGENERATED = "regenerated", "Failed; regenerated with a fresh seed"
        DELIVERED_FLAGGED = "delivered_flagged", "Failed on the last attempt; delivered flagged"
        DROPPED = "dropped", "Failed on the last attempt; dropped"

    image = models.OneToOneField("generation.SyntheticImage", on_delete=models.CASCADE, related_name="quality")
    cohort = models.ForeignKey("generation.Cohort", on_delete=models.CASCADE, related_name="quality_verdicts")
    attempt = models.PositiveSmallIntegerField(default=0)
    passed = models.BooleanField(db_index=True, help_text="No check failed (unavailable checks do not fail).")
    decision = models.CharField(max_length=20, choices=Decision.choices, db_index=True)
    checks = models.JSONField(default=list)
    failed_checks = models.JSONField(default=list, help_text="Names of the checks that failed.")
    unavailable_checks = models.JSONField(default=list, help_text="Names of configured checks that could not run.")
    reason = models.TextField(blank=True)
    # Decoding time of this image (its share of its generation call) and of its quality control.
    generation_seconds = models.FloatField(default=0.0)
    seconds = models.FloatField(default=0.0)
    fingerprint = models.BinaryField(blank=True, default=b"")  # 16 x 16 float16, for near-duplicates
    # The registered encoder's features of this image (float32), for fidelity and diversity.
    features = models.BinaryField(blank=True, default=b"")
    features_encoder = models.ForeignKey(QCModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    seal = models.CharField(max_length=80, blank=True, editable=False,
                            help_text="HMAC over the verdict (quality.sealing).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cohort", "image"]
        indexes = [models.Index(fields=["cohort", "decision"])]

    def __str__(self):
        return f"QC of image {self.image_id}: {self.decision}"
