from django.conf import settings
from django.db import models


class Cohort(models.Model):
    """A synthetic cohort: a specification and the images generated from it."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="cohorts")
    name = models.CharField(max_length=200)
    model_version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="cohorts")
    specification = models.JSONField(default=dict)
    seed = models.BigIntegerField()
    size = models.PositiveIntegerField()
    status = models.CharField(max_length=20, default="draft", db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name


class SyntheticImage(models.Model):
    """One synthetic patient's image, with everything needed to reproduce it."""

    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="images")
    index = models.PositiveIntegerField()
    seed = models.BigIntegerField()
    prompt = models.TextField()
    demographics = models.JSONField(default=dict)  # {"age": 48, "sex": "F", "race": "ASIAN", "view": "PA"}
    findings = models.JSONField(default=list)  # ["pleural_effusion", ...]
    impression = models.TextField(blank=True)
    sampling = models.JSONField(default=dict)  # scheduler, steps, guidance_scale, height, width, dtype
    image = models.FileField(max_length=500, blank=True)
    status = models.CharField(max_length=20, default="pending", db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["cohort", "index"]
        constraints = [models.UniqueConstraint(fields=["cohort", "index"], name="unique_image_index_in_cohort")]

    def __str__(self):
        return f"{self.cohort_id}/{self.index}"
