from rest_framework import serializers

from screening import selectors
from screening.models import ScreeningRecord
from screening.services import MAX_REVIEW_REASON

# Fields only privacy reviewers see; for everyone else they are null (never the matched training image).
REVIEWER_FIELDS = ("holdout_score", "exact_match", "best_match", "best_match_path", "stage_scores", "duplicate_of",
                   "duplicate_similarity", "review_reason", "reviewed_by", "reviewed_at")


class ScreeningVerdictSerializer(serializers.ModelSerializer):
    """One image's screening verdict. The cohort's owner sees the verdict; privacy reviewers also see
    the training match (its position and path in the index, the stage scores) and the review."""

    image = serializers.IntegerField(source="image_id", read_only=True)
    index = serializers.IntegerField(source="image.index", read_only=True, help_text="The patient's place in the cohort.")
    attempt = serializers.IntegerField(source="image.attempt", read_only=True,
                                       help_text="0 for the patient's first image; a flagged image is regenerated.")
    sealed = serializers.SerializerMethodField(
        help_text="Whether the record still matches its seal. False: it was edited outside the platform.")
    screened_at = serializers.DateTimeField(source="created_at", read_only=True)
    holdout_score = serializers.FloatField(allow_null=True, read_only=True,
                                           help_text="Privacy reviewers only: the same score against the holdout.")
    exact_match = serializers.BooleanField(allow_null=True, read_only=True, help_text="Privacy reviewers only.")
    best_match = serializers.IntegerField(allow_null=True, read_only=True,
                                          help_text="Privacy reviewers only: position of the matched training image.")
    best_match_path = serializers.CharField(allow_null=True, read_only=True,
                                            help_text="Privacy reviewers only: the matched training image's path "
                                                      "in the training folder.")
    stage_scores = serializers.DictField(allow_null=True, read_only=True, help_text="Privacy reviewers only.")
    duplicate_of = serializers.IntegerField(source="duplicate_of_id", allow_null=True, read_only=True,
                                            help_text="Privacy reviewers only: the earlier image this one duplicates.")
    duplicate_similarity = serializers.FloatField(allow_null=True, read_only=True, help_text="Privacy reviewers only.")
    review_reason = serializers.CharField(allow_null=True, read_only=True, help_text="Privacy reviewers only.")
    reviewed_by = serializers.CharField(source="reviewed_by.username", allow_null=True, read_only=True,
                                        default=None, help_text="Privacy reviewers only.")
    reviewed_at = serializers.DateTimeField(allow_null=True, read_only=True, help_text="Privacy reviewers only.")

    class Meta:
        model = ScreeningRecord
        fields = ["id", "image", "index", "attempt", "decision", "flagged", "score", "threshold", "reason",
                  "review_status", "sealed", "screened_at", *REVIEWER_FIELDS]
        read_only_fields = fields

    def get_sealed(self, record) -> bool:
        return selectors.sealed_ok(record)

    def to_representation(self, record):
        data = super().to_representation(record)
        if not self.context.get("reviewer"):
            for name in REVIEWER_FIELDS:
                data[name] = None
        return data


class HistogramSerializer(serializers.Serializer):
    edges = serializers.ListField(child=serializers.FloatField())
    counts = serializers.ListField(child=serializers.IntegerField())


class ReviewCountsSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    confirmed = serializers.IntegerField()
    released = serializers.IntegerField()


class PrivacySummarySerializer(serializers.Serializer):
    """screening.selectors.privacy_summary, with the cohort and the state of privacy review."""

    cohort = serializers.IntegerField()
    screened = serializers.IntegerField()
    passed = serializers.IntegerField()
    flagged = serializers.IntegerField()
    flagged_memorized = serializers.IntegerField()
    flagged_duplicate = serializers.IntegerField()
    closer_to_train_share = serializers.FloatField(
        allow_null=True, help_text="Of released images, the share closer to training than to holdout (≈0.5 "
                                   "expected when the model does not copy).")
    exact_match_share = serializers.FloatField(allow_null=True)
    released_exact_matches = serializers.IntegerField(help_text="Must be 0.")
    threshold = serializers.FloatField(allow_null=True)
    max_score = serializers.FloatField(allow_null=True)
    histogram = HistogramSerializer()
    review = ReviewCountsSerializer(help_text="Flagged images by privacy-review state.")


class ReleaseRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=MAX_REVIEW_REASON, help_text="Why the image is a false positive.")


class ConfirmRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=MAX_REVIEW_REASON, required=False, allow_blank=True, default="")
