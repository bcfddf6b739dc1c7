"""Shapes of the reviewer API (/api/v1/review/…). Read-only views of requests, certificates and
grants, and the small bodies of each decision; the decisions themselves are access.services'."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from access import workflow
from access.models import AccessGrant, AccessRequest, TrainingCertificate
from access.policy import access_policy
from access.selectors import credential_summary
from cxr_platform.api.models import ApiToken

from .serializers import GrantSerializer, RequestEventSerializer

MAX_MESSAGE = 5000


class PersonSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    full_name = serializers.SerializerMethodField()
    institution = serializers.SerializerMethodField()

    def get_full_name(self, user) -> str:
        profile = _profile_of(user)
        return profile.full_name if profile else ""

    def get_institution(self, user) -> str:
        profile = _profile_of(user)
        return profile.institution if profile else ""


def _profile_of(user):
    try:
        return user.profile
    except Exception:  # RelatedObjectDoesNotExist: a user who never saved a profile
        return None


class ReviewQueueFilterSerializer(serializers.Serializer):
    tier = serializers.SlugField(required=False, max_length=50, help_text="Only requests for this tier (slug).")
    status = serializers.ChoiceField(
        required=False, choices=AccessRequest.Status.choices,
        help_text="Only requests in this status; default: those awaiting a decision (submitted, resubmitted).",
    )
    waiting_days = serializers.IntegerField(required=False, min_value=0, max_value=3650,
                                            help_text="Only requests submitted at least this many days ago.")


class ReviewRequestSerializer(serializers.ModelSerializer):
    """One line of the queue."""

    tier = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    status = serializers.ChoiceField(choices=AccessRequest.Status.choices, read_only=True)
    requester = PersonSerializer(source="user", read_only=True)
    approvals_required = serializers.IntegerField(source="tier.approvals_required", read_only=True,
                                                  help_text="Approvals from different reviewers the tier needs.")
    approvals_this_round = serializers.SerializerMethodField(
        help_text="Approvals recorded since the latest (re)submission.")

    class Meta:
        model = AccessRequest
        fields = ("id", "tier", "status", "requester", "justification", "round", "created_at", "submitted_at",
                  "approvals_required", "approvals_this_round")
        read_only_fields = fields

    def get_approvals_this_round(self, obj) -> int:
        annotated = getattr(obj, "approvals_this_round", None)  # the queue annotates; one request counts
        return annotated if annotated is not None else obj.approvals.filter(round=obj.round).count()


class ApprovalSerializer(serializers.Serializer):
    reviewer = serializers.CharField(source="reviewer.username")
    created_at = serializers.DateTimeField()


class NoteSerializer(serializers.Serializer):
    author = serializers.CharField(source="author.username")
    text = serializers.CharField()
    created_at = serializers.DateTimeField()


class AttestationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    physionet_username = serializers.CharField()
    attested_at = serializers.DateTimeField()
    checked_at = serializers.DateTimeField(allow_null=True)
    checked_by = serializers.CharField(source="checked_by.username", allow_null=True, default=None)


class CertificateBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    completed_on = serializers.DateField()
    expires_on = serializers.DateField()
    review_status = serializers.CharField(help_text="verified, rejected or awaiting verification")


class CredentialsSerializer(serializers.Serializer):
    held = serializers.DictField(child=serializers.BooleanField(), help_text="Credential name → held now.")
    missing_for_tier = serializers.ListField(child=serializers.CharField())
    physionet_attestation = AttestationSerializer(allow_null=True)
    certificate = CertificateBriefSerializer(allow_null=True, help_text="The verified, current CITI certificate.")
    awaiting_certificate = CertificateBriefSerializer(allow_null=True, help_text="An upload awaiting verification.")


class ReviewRequestDetailSerializer(ReviewRequestSerializer):
    """Everything the review page shows about one request."""

    allowed_actions = serializers.SerializerMethodField()
    approvals = serializers.SerializerMethodField()
    credentials = serializers.SerializerMethodField()
    history = RequestEventSerializer(source="events", many=True, read_only=True)
    notes = NoteSerializer(many=True, read_only=True)
    grant = serializers.SerializerMethodField()

    class Meta(ReviewRequestSerializer.Meta):
        fields = (*ReviewRequestSerializer.Meta.fields, "decided_at", "decision_reason", "allowed_actions",
                  "approvals", "credentials", "history", "notes", "grant")
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(
        choices=[workflow.APPROVE, workflow.REJECT, workflow.REQUEST_CHANGES, workflow.REVOKE])))
    def get_allowed_actions(self, obj) -> list[str]:
        return workflow.allowed_actions(obj.status, workflow.REVIEWER)

    @extend_schema_field(ApprovalSerializer(many=True))
    def get_approvals(self, obj):
        approvals = obj.approvals.filter(round=obj.round).select_related("reviewer").order_by("created_at")
        return ApprovalSerializer(approvals, many=True).data

    @extend_schema_field(CredentialsSerializer)
    def get_credentials(self, obj):
        summary = credential_summary(obj.user)
        return CredentialsSerializer({
            "held": summary["status"],
            "missing_for_tier": access_policy(obj.user).missing_for(obj.tier),
            "physionet_attestation": summary["attestation"],
            "certificate": summary["certificate"],
            "awaiting_certificate": summary["awaiting_certificate"],
        }).data

    @extend_schema_field(GrantSerializer(allow_null=True))
    def get_grant(self, obj):
        grant = AccessGrant.objects.filter(request=obj).select_related("tier").first()
        return GrantSerializer(grant).data if grant else None


class ApproveSerializer(serializers.Serializer):
    expires_on = serializers.DateField(required=False, allow_null=True,
                                       help_text="Last day of the grant; default: the tier's grant duration.")
    message = serializers.CharField(required=False, allow_blank=True, max_length=MAX_MESSAGE)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=MAX_MESSAGE, help_text="Why; the requester reads it.")


class ChangesSerializer(serializers.Serializer):
    message = serializers.CharField(max_length=MAX_MESSAGE, help_text="What to change; the requester reads it.")


class ReviewCertificateSerializer(serializers.ModelSerializer):
    owner = PersonSerializer(source="user", read_only=True)
    review_status = serializers.CharField(read_only=True, help_text="verified, rejected or awaiting verification")

    class Meta:
        model = TrainingCertificate
        fields = ("id", "owner", "original_name", "size", "sha256", "completed_on", "expires_on", "uploaded_at",
                  "review_status", "verified_at", "rejected_at", "rejection_reason")
        read_only_fields = fields


class ReviewTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, default="reviewer token",
                                 help_text="What the token is for, e.g. 'review script'.")


class ReviewTokenSerializer(serializers.ModelSerializer):
    token = serializers.CharField(read_only=True, help_text="The secret; shown only in this response.")

    class Meta:
        model = ApiToken
        fields = ("token", "name", "prefix", "scope", "created_at", "expires_at")
        read_only_fields = fields
