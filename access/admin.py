"""Admin for accounts, tiers and agreements. The whole admin site needs staff 2FA
(``settings.REQUIRE_STAFF_2FA``): staff without a verified TOTP device this session are sent
to set one up or to enter a code. Request decisions are made on the review pages, not here."""

from functools import update_wrapper

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import ValidationError
from django.shortcuts import redirect

from . import services
from .decorators import StaffAccessRequired, is_verified, staff_2fa_redirect, two_factor_required
from .models import (
    AccessGrant,
    AccessRequest,
    Agreement,
    AgreementSignature,
    AgreementVersion,
    PhysioNetAttestation,
    Profile,
    Tier,
    TrainingCertificate,
    User,
)


class _TwoFactorAdminSite(admin.AdminSite):
    """The default site, plus: staff must have passed TOTP in this session."""

    def has_permission(self, request):
        return super().has_permission(request) and (not two_factor_required() or is_verified(request))

    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        def guarded(request, *args, **kwargs):
            user = request.user
            if user.is_authenticated and not (user.is_active and user.is_staff):
                raise StaffAccessRequired("The admin is for administrators: staff accounts.")
            if user.is_authenticated and two_factor_required() and not is_verified(request):
                return staff_2fa_redirect(request)
            return inner(request, *args, **kwargs)

        return update_wrapper(guarded, inner)

    def login(self, request, extra_context=None):
        """Signed-in users never see the admin's own login form: staff are sent on (to 2FA
        or the admin), everyone else gets the "not allowed" page."""
        user = request.user
        if user.is_authenticated and not (user.is_active and user.is_staff):
            raise StaffAccessRequired("The admin is for administrators: staff accounts.")
        if user.is_authenticated and two_factor_required() and not is_verified(request):
            return staff_2fa_redirect(request) or redirect("admin:index")
        return super().login(request, extra_context)


# As django-otp documents for OTPAdminSite: keep every registration, change the class.
admin.site.__class__ = _TwoFactorAdminSite


@admin.register(User)
class PlatformUserAdmin(UserAdmin):
    fieldsets = UserAdmin.fieldsets + (("Verification", {"fields": ("email_verified",)}),)
    list_display = ("username", "email", "email_verified", "is_staff", "is_superuser", "is_active")
    list_filter = ("is_staff", "is_superuser", "is_active", "email_verified")


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "capabilities", "required_credentials", "quotas", "approvals_required", "grant_duration_days", "is_active")
    filter_horizontal = ("model_versions",)
    prepopulated_fields = {"slug": ("name",)}


class AgreementVersionInline(admin.TabularInline):
    model = AgreementVersion
    fields = ("number", "published_at", "sha256")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Agreement)
class AgreementAdmin(admin.ModelAdmin):
    list_display = ("title", "slug", "is_active", "current_version")
    inlines = [AgreementVersionInline]


@admin.register(AgreementVersion)
class AgreementVersionAdmin(admin.ModelAdmin):
    """Adding a version publishes it (users must sign again); published texts never change."""

    list_display = ("agreement", "number", "published_at", "sha256")
    fields = ("agreement", "text", "number", "sha256", "published_at", "published_by")
    readonly_fields = ("number", "sha256", "published_at", "published_by")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("agreement", "text") if obj is not None else ())

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            return
        try:
            published = services.publish_agreement_version(agreement=obj.agreement, text=obj.text, actor=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return
        obj.pk = published.pk
        obj.number = published.number


@admin.register(AccessRequest)
class AccessRequestAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "tier", "status", "submitted_at", "decided_at")
    list_filter = ("status", "tier")
    search_fields = ("user__username", "user__email")
    readonly_fields = [f.name for f in AccessRequest._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(AccessGrant)
class AccessGrantAdmin(admin.ModelAdmin):
    list_display = ("user", "tier", "status", "granted_at", "expires_at")
    list_filter = ("status", "tier")
    readonly_fields = [f.name for f in AccessGrant._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "full_name", "institution", "physionet_username")
    search_fields = ("user__username", "full_name", "institution")


admin.site.register(PhysioNetAttestation, list_display=("user", "physionet_username", "attested_at", "checked_by", "checked_at"))
admin.site.register(AgreementSignature, list_display=("user", "version", "typed_name", "signed_at", "ip_address"))
admin.site.register(
    TrainingCertificate,
    list_display=("user", "completed_on", "expires_on", "uploaded_at"),
    exclude=("file",),
    readonly_fields=("user", "original_name", "size", "sha256", "completed_on", "expires_on", "uploaded_at"),
)
