from django.urls import reverse
from rest_framework import serializers

from registry.models import ModelFile, ModelVersion


class ModelVersionSerializer(serializers.ModelSerializer):
    can_download_weights = serializers.SerializerMethodField()
    files_url = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["id", "name", "version", "status", "registered_at", "total_size", "defaults", "can_download_weights", "files_url"]

    def get_can_download_weights(self, version) -> bool:
        return version.pk in self.context["downloadable"]

    def get_files_url(self, version) -> str | None:
        if version.pk not in self.context["downloadable"]:
            return None
        return self.context["request"].build_absolute_uri(reverse("api-model-files", args=[version.pk]))


class ModelFileLinkSerializer(serializers.ModelSerializer):
    url = serializers.CharField()
    expires_at = serializers.DateTimeField()

    class Meta:
        model = ModelFile
        fields = ["path", "size", "sha256", "url", "expires_at"]


class ModelFilesSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.CharField()
    status = serializers.CharField()
    total_size = serializers.IntegerField()
    sha256sums = serializers.CharField(help_text="The manifest in `sha256sum -c` format.")
    files = ModelFileLinkSerializer(many=True)
