from rest_framework import serializers

from access.models import AccessGrant, AccessRequest, Profile, RequestEvent, Tier


class ProfileSerializer(serializers.ModelSerializer):
    class Meta:
        model = Profile
        fields = ("full_name", "institution", "position", "institutional_email", "orcid", "physionet_username")


class TierSerializer(serializers.ModelSerializer):
    required_credentials = serializers.ListField(source="credentials_needed", child=serializers.CharField())

    class Meta:
        model = Tier
        fields = ("slug", "name", "description", "capabilities", "required_credentials", "quotas",
                  "grant_duration_days", "approvals_required")


class GrantSerializer(serializers.ModelSerializer):
    tier = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    status = serializers.CharField(read_only=True, help_text="active, revoked or expired")

    class Meta:
        model = AccessGrant
        fields = ("id", "tier", "status", "granted_at", "expires_at", "revoked_at", "revocation_reason")


class RequestEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", default=None)

    class Meta:
        model = RequestEvent
        fields = ("action", "from_status", "to_status", "message", "actor", "created_at")


class AccessRequestSerializer(serializers.ModelSerializer):
    tier = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    status = serializers.CharField(
        read_only=True, help_text="draft, submitted, changes_requested, resubmitted, approved, rejected, revoked or expired"
    )
    history = RequestEventSerializer(source="events", many=True, read_only=True)

    class Meta:
        model = AccessRequest
        fields = ("id", "tier", "status", "justification", "created_at", "submitted_at", "decided_at",
                  "decision_reason", "history")
        read_only_fields = fields


class AccessRequestCreateSerializer(serializers.Serializer):
    tier = serializers.SlugRelatedField(slug_field="slug", queryset=Tier.objects.filter(is_active=True))
    justification = serializers.CharField(max_length=5000)
