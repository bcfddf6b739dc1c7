from django.db import models


class ModelVersion(models.Model):
    """One registered version of the generative model, stored in diffusers layout."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DEPRECATED = "deprecated", "Deprecated"
        WITHDRAWN = "withdrawn", "Withdrawn"

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=50)
    directory = models.CharField(max_length=1024, help_text="Local directory holding the diffusers pipeline.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    # Generation defaults: scheduler, steps, guidance_scale, height, width, prompt_template,
    # races, sexes, age_min, age_max, findings {key: [phrasings]}, views.
    defaults = models.JSONField(default=dict, blank=True)
    registered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="unique_model_name_version")]
        ordering = ["name", "-registered_at"]

    def __str__(self):
        return f"{self.name} {self.version}"
