from django.contrib import admin, messages
from django.template.defaultfilters import filesizeformat

from . import selectors, services
from .models import ModelFile, ModelVersion


class ModelFileInline(admin.TabularInline):
    model = ModelFile
    fields = ["path", "size", "sha256"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


def _status_action(status: str, label: str):
    def action(modeladmin, request, queryset):
        for version in queryset:
            try:
                services.change_status(model_version=version, status=status, actor=request.user, reason="admin action")
            except services.StatusChangeError as exc:
                modeladmin.message_user(request, str(exc), messages.ERROR)
            else:
                modeladmin.message_user(request, f"{version} is now {status}.", messages.SUCCESS)

    action.__name__ = f"make_{status}"
    return admin.action(description=label)(action)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Versions are registered with ``manage.py register_model`` (it validates and hashes the
    files) and change status through the actions, which audit each change."""

    list_display = ["__str__", "status", "size", "file_count", "covered_by", "registered_at"]
    list_filter = ["status", "name"]
    search_fields = ["name", "version", "directory"]
    readonly_fields = [
        "name", "version", "directory", "status", "status_changed_at", "registered_at", "registered_by",
        "size", "covered_by", "sha256sums", "model_card", "defaults",
    ]
    fields = readonly_fields
    inlines = [ModelFileInline]
    actions = [
        _status_action(ModelVersion.Status.ACTIVE, "Reactivate selected versions"),
        _status_action(ModelVersion.Status.DEPRECATED, "Deprecate selected versions"),
        _status_action(ModelVersion.Status.WITHDRAWN, "Withdraw selected versions (final)"),
    ]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Size")
    def size(self, obj):
        return filesizeformat(obj.total_size)

    @admin.display(description="Files")
    def file_count(self, obj):
        return obj.files.count()

    @admin.display(description="Tiers covering it")
    def covered_by(self, obj):
        return ", ".join(f"{tier.name} ({', '.join(tier.capabilities)})" for tier in selectors.covering_tiers(obj)) or "—"

    @admin.display(description="sha256sums")
    def sha256sums(self, obj):
        return services.sha256sums(obj.files.all())
