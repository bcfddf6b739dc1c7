from django.contrib import admin

from .models import ScreeningIndex, ScreeningRecord


@admin.register(ScreeningIndex)
class ScreeningIndexAdmin(admin.ModelAdmin):
    """Read-only: indexes change only through build_screening_index (audited)."""

    list_display = ("model_version", "status", "train_count", "holdout_count", "threshold", "built_at")
    readonly_fields = [f.name for f in ScreeningIndex._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ScreeningRecord)
class ScreeningRecordAdmin(admin.ModelAdmin):
    """Scores only; the images are shown in the audited reviewer pages (/screening/)."""

    list_display = ("image", "cohort", "decision", "score", "threshold", "created_at")
    list_filter = ("decision",)
    exclude = ("fingerprint",)
    readonly_fields = [f.name for f in ScreeningRecord._meta.fields if f.name != "fingerprint"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
