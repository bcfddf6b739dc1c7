from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from exports import selectors
from exports.dicom import TRANSFER_SYNTAXES
from exports.models import Delivery, DeliveryInstance, Destination, Export

FAILURES_LISTED = 1000  # failed instances listed per delivery; "reasons" groups them all


class ExportRequestSerializer(serializers.Serializer):
    include_png = serializers.BooleanField(default=False)
    transfer_syntax = serializers.ChoiceField(choices=sorted(TRANSFER_SYNTAXES), required=False)


class ExportSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = ["id", "cohort", "status", "percent", "progress_done", "progress_total", "image_count",
                  "include_png", "transfer_syntax", "size", "sha256", "manifest_sha256", "error", "created_at",
                  "started_at", "finished_at", "expires_at", "url"]
        read_only_fields = fields

    def get_url(self, export) -> str:
        request = self.context.get("request")
        path = f"/api/v1/exports/{export.pk}"
        return request.build_absolute_uri(path) if request else path


class ExportDetailSerializer(ExportSerializer):
    download = serializers.SerializerMethodField()
    signing_key_url = serializers.SerializerMethodField()

    class Meta(ExportSerializer.Meta):
        fields = [*ExportSerializer.Meta.fields, "download", "signing_key_url"]
        read_only_fields = fields

    def get_download(self, export) -> dict | None:
        return self.context.get("download")

    def get_signing_key_url(self, export) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri("/api/v1/exports/signing-key") if request else "/api/v1/exports/signing-key"


class DestinationSerializer(serializers.ModelSerializer):
    """A PACS you may send to. Addresses and credentials stay with the admins."""

    class Meta:
        model = Destination
        fields = ["id", "name", "kind", "description"]
        read_only_fields = fields


class DeliveryRequestSerializer(serializers.Serializer):
    destination = serializers.IntegerField(min_value=1, help_text="The id of a destination from /destinations.")


class DeliveryFailureSerializer(serializers.ModelSerializer):
    reason = serializers.CharField(source="error")

    class Meta:
        model = DeliveryInstance
        fields = ["sop_instance_uid", "path", "reason", "attempts"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    destination = DestinationSerializer(read_only=True)
    percent = serializers.IntegerField(read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Delivery
        fields = ["id", "export", "destination", "status", "percent", "instance_count", "sent_count",
                  "failed_count", "error", "runs", "created_at", "started_at", "finished_at", "url"]
        read_only_fields = fields

    def get_url(self, delivery) -> str:
        request = self.context.get("request")
        path = f"/api/v1/deliveries/{delivery.pk}"
        return request.build_absolute_uri(path) if request else path


class FailureReasonSerializer(serializers.Serializer):
    reason = serializers.CharField()
    count = serializers.IntegerField()


class DeliveryDetailSerializer(DeliverySerializer):
    reasons = serializers.SerializerMethodField()
    failures = serializers.SerializerMethodField()
    failures_truncated = serializers.SerializerMethodField()

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "reasons", "failures", "failures_truncated"]
        read_only_fields = fields

    @extend_schema_field(FailureReasonSerializer(many=True))
    def get_reasons(self, delivery):
        return selectors.failure_reasons(delivery)

    @extend_schema_field(DeliveryFailureSerializer(many=True))
    def get_failures(self, delivery):
        rows = selectors.failed_instances(delivery, FAILURES_LISTED)
        return DeliveryFailureSerializer(rows, many=True).data

    def get_failures_truncated(self, delivery) -> bool:
        return delivery.failed_count > FAILURES_LISTED
