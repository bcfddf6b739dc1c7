"""Access pages. Thin: forms validate, services change state, selectors query."""

from __future__ import annotations

import base64
import io
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from cxr_platform.audit.context import client_ip
from cxr_platform.audit.services import record_event

from . import certificates, selectors, services, workflow
from .decorators import reviewer_is_verified, staff_2fa_required
from .forms import (
    AccessRequestForm,
    AttestationForm,
    CertificateForm,
    DecisionForm,
    JustificationForm,
    NoteForm,
    OTPTokenForm,
    ProfileForm,
    QueueFilterForm,
    RegistrationForm,
    SignatureForm,
)
from .models import PhysioNetAttestation


def _errors(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _safe_next(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return default


def landing_page(user) -> str:
    """Where a user lands after logging in when no ``next`` says otherwise: staff on the review
    queue (which sends them through two-factor authentication first), everyone else on Home."""
    return reverse("review-queue") if user.is_active and user.is_staff else resolve_url(settings.LOGIN_REDIRECT_URL)


class LoginView(auth_views.LoginView):
    """Django's login, landing by role (:func:`landing_page`) when the form carries no ``next``."""

    def get_default_redirect_url(self):
        if self.next_page:
            return resolve_url(self.next_page)
        return landing_page(self.request.user)


# --- Registration ------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def register(request):
    if request.user.is_authenticated:
        return redirect("access-dashboard")
    form = RegistrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = services.register_user(
            username=form.cleaned_data["username"], email=form.cleaned_data["email"], password=form.cleaned_data["password1"]
        )
        auth_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome. We sent a confirmation link to {user.email}; open it to verify your address.")
        return redirect("access-dashboard")
    return render(request, "registration/register.html", {"form": form})


def verify_email(request, token):
    try:
        user = services.verify_email(token)
    except ValidationError as exc:
        return render(request, "registration/verify_email.html", {"error": _errors(exc)}, status=400)
    return render(request, "registration/verify_email.html", {"verified_user": user})


@login_required
@require_POST
def resend_verification(request):
    if request.user.email_verified:
        messages.info(request, "Your e-mail address is already confirmed.")
    elif not request.user.email:
        messages.error(request, "Your account has no e-mail address.")
    else:
        services.send_email_verification(request.user)
        messages.success(request, f"We sent a new confirmation link to {request.user.email}.")
    return redirect("access-dashboard")


# --- Researcher pages ------------------------------------------------------------------------------


@login_required
def dashboard(request):
    user = request.user
    return render(
        request,
        "access/dashboard.html",
        {
            "credentials": selectors.credential_summary(user),
            "tiers": selectors.tier_overview(user),
            "requests": selectors.requests_of(user),
            "grants": selectors.grants_of(user),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def profile_edit(request):
    profile = services.profile_for(request.user)
    form = ProfileForm(request.POST or None, instance=profile)
    if request.method == "POST" and form.is_valid():
        services.update_profile(user=request.user, actor=request.user, **{k: form.cleaned_data[k] for k in form.fields})
        messages.success(request, "Profile saved.")
        return redirect("access-dashboard")
    return render(request, "access/profile_form.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def attest_physionet(request):
    profile = services.profile_for(request.user)
    form = AttestationForm(request.POST or None, initial={"physionet_username": profile.physionet_username})
    if request.method == "POST" and form.is_valid():
        try:
            services.attest_physionet(user=request.user, physionet_username=form.cleaned_data["physionet_username"], actor=request.user)
        except ValidationError as exc:
            form.add_error(None, _errors(exc))
        else:
            messages.success(request, "Attestation recorded. A reviewer will check it on PhysioNet.")
            return redirect("access-dashboard")
    return render(request, "access/attestation_form.html", {"form": form, "attestation": selectors.credential_summary(request.user)["attestation"]})


@login_required
@require_http_methods(["GET", "POST"])
def certificate_upload(request):
    form = CertificateForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.upload_certificate(
                user=request.user,
                uploaded_file=form.cleaned_data["file"],
                completed_on=form.cleaned_data["completed_on"],
                expires_on=form.cleaned_data["expires_on"],
                actor=request.user,
            )
        except ValidationError as exc:
            form.add_error("file" if "PDF" in _errors(exc) or "MB" in _errors(exc) or "empty" in _errors(exc) else None, _errors(exc))
        else:
            messages.success(request, "Certificate uploaded and stored encrypted.")
            return redirect("access-dashboard")
    status = 400 if request.method == "POST" else 200
    return render(request, "access/certificate_form.html", {"form": form}, status=status)


@login_required
def certificate_file(request, pk):
    """The decrypted PDF, for its owner and for reviewers who passed two-factor authentication."""
    certificate = selectors.certificate_for(request.user, pk, reviewer=reviewer_is_verified(request))
    try:
        data = certificates.read_certificate(certificate)
    except Exception:
        return render(request, "errors/error.html", {"title": "Unreadable file", "message": "This certificate cannot be decrypted; ask an administrator."}, status=409)
    if certificate.user_id != request.user.pk:
        record_event("certificate.viewed", actor=request.user, target=certificate, details={"owner": certificate.user_id})
    return certificates.download_response(certificate, data)


@login_required
@require_http_methods(["GET", "POST"])
def agreement_sign(request, slug):
    version = selectors.current_version(slug)
    signed = version.signatures.filter(user=request.user).first()
    form = SignatureForm(request.POST or None, initial={"text_sha256": version.sha256})
    if request.method == "POST" and form.is_valid():
        try:
            services.sign_agreement(
                user=request.user,
                version=version,
                typed_name=form.cleaned_data["typed_name"],
                shown_sha256=form.cleaned_data["text_sha256"],
                ip_address=client_ip(request),
            )
        except ValidationError as exc:
            form.add_error(None, _errors(exc))
        else:
            messages.success(request, f"You signed {version}.")
            return redirect(_safe_next(request, reverse("access-dashboard")))
    return render(request, "access/agreement_sign.html", {"version": version, "form": form, "signed": signed})


@login_required
@require_http_methods(["GET", "POST"])
def request_new(request):
    form = AccessRequestForm(request.POST or None, initial={"tier": request.GET.get("tier")})
    if request.method == "POST" and form.is_valid():
        try:
            request_obj = services.create_request(
                user=request.user, tier=form.cleaned_data["tier"], justification=form.cleaned_data["justification"]
            )
        except ValidationError as exc:
            form.add_error(None, _errors(exc))
        else:
            messages.success(request, "Draft saved. Submit it when your credentials are complete.")
            return redirect("access-request-detail", pk=request_obj.pk)
    return render(request, "access/request_form.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def request_detail(request, pk):
    request_obj = selectors.request_of(request.user, pk)
    form = JustificationForm(initial={"justification": request_obj.justification})
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "save":
                form = JustificationForm(request.POST)
                if form.is_valid():
                    services.update_request(request_obj=request_obj, actor=request.user, justification=form.cleaned_data["justification"])
                    messages.success(request, "Saved.")
                    return redirect("access-request-detail", pk=request_obj.pk)
            elif action == "submit":
                services.submit_request(request_obj=request_obj, actor=request.user)
                messages.success(request, "Submitted. Reviewers have been notified; you will get an e-mail on each decision.")
                return redirect("access-request-detail", pk=request_obj.pk)
            else:
                messages.error(request, "Unknown action.")
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        request_obj.refresh_from_db()
    policy_missing = selectors.access_policy(request.user).missing_for(request_obj.tier)
    return render(
        request,
        "access/request_detail.html",
        {
            "req": request_obj,
            "form": form,
            "events": request_obj.events.select_related("actor"),
            "actions": workflow.allowed_actions(request_obj.status, workflow.REQUESTER),
            "missing": policy_missing,
            "grant": getattr(request_obj, "grant", None) if request_obj.status != "draft" else None,
        },
    )


# --- Reviewer pages --------------------------------------------------------------------------------


@staff_2fa_required
def review_queue(request):
    form = QueueFilterForm(request.GET or None)
    if form.is_bound and form.is_valid():
        requests = selectors.review_queue(**{k: v for k, v in form.cleaned_data.items() if v not in (None, "")})
    elif form.is_bound:
        requests = selectors.review_queue().none()
    else:
        requests = selectors.review_queue()
    return render(request, "access/review_queue.html", {"form": form, "requests": requests[:500]})


@staff_2fa_required
def review_certificates(request):
    return render(request, "access/review_certificates.html", {
        "to_verify": selectors.certificates_to_verify()[:500],
        "due": selectors.certificates_due_for_renewal(),
        "notice_days": selectors.RENEWAL_NOTICE_DAYS,
        "today": timezone.localdate(),
    })


@staff_2fa_required
@require_http_methods(["POST"])
def review_certificate(request, pk):
    certificate = selectors.certificate_to_decide(pk)
    try:
        if request.POST.get("decision") == "verify":
            services.verify_certificate(certificate=certificate, reviewer=request.user)
            messages.success(request, f"Certificate of {certificate.user.get_username()} verified.")
        elif request.POST.get("decision") == "reject":
            services.reject_certificate(certificate=certificate, reviewer=request.user,
                                        reason=request.POST.get("reason", ""))
            messages.success(request, f"Certificate of {certificate.user.get_username()} rejected.")
        else:
            messages.error(request, "Choose verify or reject.")
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    return redirect("review-certificates")


@staff_2fa_required
@require_http_methods(["GET", "POST"])
def review_request(request, pk):
    request_obj = selectors.request_for_review(pk)
    actions = workflow.allowed_actions(request_obj.status, workflow.REVIEWER)
    decision_form = DecisionForm(actions=actions)
    note_form = NoteForm()
    if request.method == "POST":
        kind = request.POST.get("form")
        try:
            if kind == "note":
                note_form = NoteForm(request.POST)
                if note_form.is_valid():
                    services.add_note(request_obj=request_obj, reviewer=request.user, text=note_form.cleaned_data["text"])
                    messages.success(request, "Note added.")
                    return redirect("review-request", pk=request_obj.pk)
            elif kind == "physionet":
                attestation = PhysioNetAttestation.objects.filter(pk=request.POST.get("attestation") or 0, user=request_obj.user).first()
                if attestation is None:
                    messages.error(request, "No such attestation for this requester.")
                else:
                    services.verify_physionet(attestation=attestation, reviewer=request.user)
                    messages.success(request, "PhysioNet check recorded.")
                    return redirect("review-request", pk=request_obj.pk)
            elif kind == "decision":
                decision_form = DecisionForm(request.POST)
                if decision_form.is_valid():
                    _decide(request, request_obj, decision_form.cleaned_data)
                    return redirect("review-request", pk=request_obj.pk)
            else:
                messages.error(request, "Unknown form.")
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        request_obj.refresh_from_db()
    return render(
        request,
        "access/review_request.html",
        {
            "req": request_obj,
            "credentials": selectors.credential_summary(request_obj.user),
            "missing": selectors.access_policy(request_obj.user).missing_for(request_obj.tier),
            "events": request_obj.events.select_related("actor"),
            "notes": request_obj.notes.select_related("author"),
            "approvals": request_obj.approvals.filter(round=request_obj.round).select_related("reviewer"),
            "actions": workflow.allowed_actions(request_obj.status, workflow.REVIEWER),
            "grant": getattr(request_obj, "grant", None),
            "decision_form": decision_form,
            "note_form": note_form,
            "other_requests": selectors.requests_of(request_obj.user).exclude(pk=request_obj.pk),
        },
    )


def _decide(request, request_obj, data) -> None:
    decision, message = data["decision"], data.get("message") or ""
    if decision == DecisionForm.APPROVE:
        request_obj = services.approve_request(request_obj=request_obj, reviewer=request.user, expires_on=data.get("expires_on"), message=message)
        if request_obj.status == "approved":
            messages.success(request, "Approved; the grant is active.")
        else:
            messages.success(request, "Your approval is recorded; this tier needs another reviewer's approval too.")
    elif decision == DecisionForm.CHANGES:
        services.request_changes(request_obj=request_obj, reviewer=request.user, message=message)
        messages.success(request, "Sent back to the requester for changes.")
    elif decision == DecisionForm.REJECT:
        services.reject_request(request_obj=request_obj, reviewer=request.user, reason=message)
        messages.success(request, "Rejected.")
    elif decision == DecisionForm.REVOKE:
        services.revoke_request(request_obj=request_obj, reviewer=request.user, reason=message)
        messages.success(request, "Revoked; the grant no longer gives access.")


# --- Two-factor authentication ---------------------------------------------------------------------


def _qr_data_uri(url: str) -> str:
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


@login_required
@require_http_methods(["GET", "POST"])
def otp_setup(request):
    """Add a TOTP device: show the QR code, confirm it with one code, and count as verified."""
    user = request.user
    next_url = _safe_next(request, reverse("review-queue") if user.is_staff else reverse("access-dashboard"))
    if user_has_device(user, confirmed=True):
        return redirect(f"{reverse('otp-verify')}?{urlencode({'next': next_url})}")
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first() or TOTPDevice.objects.create(
        user=user, name="Authenticator app", confirmed=False
    )
    form = OTPTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"]):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            record_event("auth.2fa_enabled", actor=user, target=user)
            messages.success(request, "Two-factor authentication is set up.")
            return redirect(next_url)
        allowed, _ = device.verify_is_allowed()
        form.add_error("token", "That code is not right. Check your phone's clock and try the current code."
                       if allowed else "Too many wrong codes in a row; wait a few seconds and try again.")
    return render(
        request,
        "access/otp_setup.html",
        {"form": form, "qr": _qr_data_uri(device.config_url), "secret": base64.b32encode(device.bin_key).decode(), "next": next_url},
    )


@login_required
@require_http_methods(["GET", "POST"])
def otp_verify(request):
    user = request.user
    next_url = _safe_next(request, reverse("review-queue") if user.is_staff else reverse("access-dashboard"))
    devices = list(TOTPDevice.objects.filter(user=user, confirmed=True))
    if not devices:
        return redirect(f"{reverse('otp-setup')}?{urlencode({'next': next_url})}")
    form = OTPTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        for device in devices:
            if device.verify_token(form.cleaned_data["token"]):
                otp_login(request, device)
                record_event("auth.2fa_verified", actor=user, target=user)
                return redirect(next_url)
        record_event("auth.2fa_failed", actor=user, target=user)
        throttled = any(not d.verify_is_allowed()[0] for d in devices)
        form.add_error("token", "Too many wrong codes in a row; wait a few seconds and try again." if throttled
                       else "That code is not right, or was already used. Enter the current code.")
    return render(request, "access/otp_verify.html", {"form": form, "next": next_url})
