from rest_framework import serializers

from exports.dicom import TRANSFER_SYNTAXES
from exports.models import Export


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
