from django.utils import timezone
from rest_framework import serializers
from rest_framework.utils import html

from generation import selectors
from generation.models import Cohort, SyntheticImage


class StrictChoiceField(serializers.ChoiceField):
    """A choice sent empty in a form (multipart or urlencoded) is an invalid choice, as it is in JSON —
    not DRF's "not given" — so the API accepts exactly what its schema says."""

    def get_value(self, dictionary):
        if html.is_html_input(dictionary) and self.field_name in dictionary:
            return dictionary.get(self.field_name)
        return super().get_value(dictionary)


class CohortRequestSerializer(serializers.Serializer):
    """The create call's JSON (also what ``generate_cohort --spec`` reads). Checked by the services."""

    name = serializers.CharField()
    size = serializers.IntegerField(min_value=1)
    model_version = serializers.IntegerField(required=False, help_text="Default: the newest active one you may use.")
    seed = serializers.IntegerField(required=False, min_value=0, help_text="Default: drawn at random.")
    preset = serializers.ChoiceField(
        choices=["balanced", "reference"], required=False, allow_null=True, default="balanced",
        help_text="Shares not given come from the preset. Default: balanced (as in the browser); null for none.",
    )
    sex = serializers.DictField(child=serializers.FloatField(), required=False, help_text='e.g. {"F": 0.5, "M": 0.5}')
    race = serializers.DictField(child=serializers.FloatField(), required=False)
    age = serializers.JSONField(required=False, help_text='{"min": 40, "max": 80} or {"bins": [{"min", "max", "weight"}]}')
    view = serializers.DictField(child=serializers.FloatField(), required=False, help_text='e.g. {"PA": 0.7, "AP": 0.3}')
    findings = serializers.DictField(child=serializers.FloatField(), required=False)
    group_findings = serializers.JSONField(required=False, help_text='[{"where": {"race": "BLACK"}, "findings": {…}}]')
    impressions = serializers.ListField(child=serializers.CharField(), required=False)
    sampling = serializers.JSONField(required=False, help_text='overrides within bounds, e.g. {"steps": 50}')
    quality_policy = StrictChoiceField(
        choices=["deliver", "drop"], required=False,
        help_text="A patient whose image fails quality control on every attempt: deliver it flagged, or drop it "
                  "and report it (default: the platform's QC_AFTER_LAST_ATTEMPT).")


def _moment(value, zone):
    """What DRF's DateTimeField writes (ISO 8601 in the current time zone ``zone``, "Z" for UTC),
    without its per-call machinery: a list page writes 200 of them."""
    if value is None:
        return None
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class CohortSerializer(serializers.ModelSerializer):
    model_version = serializers.StringRelatedField()
    model_version_id = serializers.IntegerField(read_only=True)
    progress = serializers.SerializerMethodField()
    notice = serializers.SerializerMethodField(
        help_text="What an unfinished cohort waits for, in plain words (e.g. no GPU worker is running), or null."
    )

    class Meta:
        model = Cohort
        fields = [
            "id", "name", "status", "size", "seed", "model_version", "model_version_id", "specification",
            "created_at", "submitted_at", "started_at", "finished_at", "error", "notice", "progress", "quality_policy",
        ]
        read_only_fields = fields

    def to_representation(self, cohort) -> dict:
        """The same dict as DRF's field-by-field representation (a test compares them), written out:
        the cohort list is polled, and DRF's per-field machinery was the largest part of a 50-cohort
        page (bench/api.py)."""
        progress = self._progress(cohort)
        zone = timezone.get_current_timezone()
        return {
            "id": cohort.pk, "name": cohort.name, "status": cohort.status, "size": cohort.size, "seed": cohort.seed,
            "model_version": str(cohort.model_version), "model_version_id": cohort.model_version_id,
            "specification": cohort.specification,
            "created_at": _moment(cohort.created_at, zone),
            "submitted_at": _moment(cohort.submitted_at, zone),
            "started_at": _moment(cohort.started_at, zone),
            "finished_at": _moment(cohort.finished_at, zone),
            "error": cohort.error, "notice": progress["notice"], "progress": progress,
            "quality_policy": cohort.quality_policy,
        }

    def _progress(self, cohort) -> dict:
        if getattr(cohort, "_progress_cache", None) is None:
            cohort._progress_cache = selectors.cohort_progress(cohort)
        return cohort._progress_cache

    def get_progress(self, cohort) -> dict:
        return self._progress(cohort)

    def get_notice(self, cohort) -> str | None:
        return self._progress(cohort)["notice"]


class SyntheticImageSerializer(serializers.ModelSerializer):
    file = serializers.SerializerMethodField()

    class Meta:
        model = SyntheticImage
        fields = ["id", "index", "attempt", "seed", "prompt", "demographics", "findings", "impression", "sampling", "file"]
        read_only_fields = fields

    def get_file(self, image) -> str:
        from django.urls import reverse

        url = reverse("api-cohort-image-file", args=[image.cohort_id, image.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url
