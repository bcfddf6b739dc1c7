"""Admin for PACS destinations (where researchers may push exports) and a read-only view of
deliveries. The destination password is write-only: it is encrypted when saved and never shown."""

from django import forms
from django.contrib import admin

from . import delivery as deliveries
from .models import Delivery, DeliveryInstance, Destination


class DestinationForm(forms.ModelForm):
    password = forms.CharField(
        required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="STOW-RS basic authentication. Stored encrypted and never shown; leave empty to keep the stored one.")
    clear_password = forms.BooleanField(required=False, label="Remove the stored password")

    class Meta:
        model = Destination
        fields = ["name", "description", "kind", "called_ae_title", "host", "port", "calling_ae_title", "base_url",
                  "username", "allowed_users", "open_to_all_exporters", "is_active"]


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin):
    form = DestinationForm
    list_display = ["name", "kind", "address", "open_to_all_exporters", "allowed_count", "password_stored", "is_active"]
    list_filter = ["kind", "is_active", "open_to_all_exporters"]
    search_fields = ["name", "host", "base_url", "called_ae_title"]
    filter_horizontal = ["allowed_users"]
    fieldsets = [
        (None, {"fields": ["name", "description", "kind", "is_active"]}),
        ("DICOM C-STORE", {"fields": ["called_ae_title", "host", "port", "calling_ae_title"]}),
        ("DICOMweb STOW-RS", {"fields": ["base_url", "username", "password", "clear_password"]}),
        ("Who may use it (they also need the Export tier)", {"fields": ["open_to_all_exporters", "allowed_users"]}),
    ]

    @admin.display(description="Users", ordering=None)
    def allowed_count(self, obj):
        return "everyone with Export" if obj.open_to_all_exporters else obj.allowed_users.count()

    @admin.display(description="Password", boolean=True)
    def password_stored(self, obj):
        return obj.has_password

    def save_model(self, request, obj, form, change):
        deliveries.save_destination(obj, actor=request.user, password=form.cleaned_data.get("password") or None,
                                    clear_password=form.cleaned_data.get("clear_password", False),
                                    changed=[name for name in form.changed_data if name != "password"])


class DeliveryInstanceInline(admin.TabularInline):
    model = DeliveryInstance
    fields = ["path", "sop_instance_uid", "status", "attempts", "error", "sent_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(status=DeliveryInstance.Status.SENT)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """Read-only: deliveries change only through exports.delivery, which audits every change."""

    list_display = ["pk", "export", "destination", "requested_by", "status", "sent_count", "failed_count",
                    "instance_count", "created_at"]
    list_filter = ["status", "destination"]
    readonly_fields = ["export", "destination", "requested_by", "status", "instance_count", "sent_count",
                       "failed_count", "error", "runs", "task_id", "created_at", "started_at", "finished_at"]
    fields = readonly_fields
    inlines = [DeliveryInstanceInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
