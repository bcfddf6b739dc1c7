from django.conf import settings
from django.db import models


class ModelVersion(models.Model):
    """One registered version of the generative model, stored in diffusers layout.

    Created only by ``registry.services.register_model_version``, which hashes every
    file into ``files`` (the manifest); status changes go through
    ``registry.services.change_status``.
    """

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
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    total_size = models.BigIntegerField(default=0, help_text="Sum of the sizes of the files in the manifest, in bytes.")
    model_card = models.TextField(blank=True, help_text="The directory's README / model card at registration.")
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="unique_model_name_version")]
        ordering = ["name", "-registered_at"]

    def __str__(self):
        return f"{self.name} {self.version}"


class ModelFile(models.Model):
    """One file of a model version's manifest, as it was when the version was registered."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1024, help_text="Relative to the version's directory, with forward slashes.")
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "path"], name="unique_model_file_path")]
        ordering = ["path"]

    def __str__(self):
        return self.path
