"""Staff pages need two-factor authentication.

``staff_2fa_required`` (for function views) and ``Staff2FARequiredMixin`` (class views):
anonymous users go to the login page; signed-in users without staff rights get the "not
allowed" page (403, :class:`StaffAccessRequired`), which says what the page needs; staff who
have not passed TOTP in this session go to set it up (no confirmed device yet) or to enter a code. The check
is skipped only when ``settings.REQUIRE_STAFF_2FA`` is false (development convenience).
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import reverse
from django_otp import user_has_device


def two_factor_required() -> bool:
    return bool(getattr(settings, "REQUIRE_STAFF_2FA", True))


def is_verified(request) -> bool:
    user = request.user
    check = getattr(user, "is_verified", None)
    return bool(check and check())


class StaffAccessRequired(PermissionDenied):
    """A signed-in user without staff rights asked for a staff page (answered by the 403 page)."""

    needs_staff = True

    def __init__(self, message: str = "This page is for staff: reviewers and administrators."):
        super().__init__(message)


def staff_2fa_redirect(request):
    """None when ``request`` may see a staff page; otherwise the redirect to send instead
    (login, 2FA set-up or 2FA code). Raises :class:`StaffAccessRequired` for a signed-in
    user who is not staff: logging in again would not help them."""
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not user.is_active or not user.is_staff:
        raise StaffAccessRequired()
    if not two_factor_required() or is_verified(request):
        return None
    target = "otp-verify" if user_has_device(user, confirmed=True) else "otp-setup"
    return redirect(f"{reverse(target)}?{urlencode({'next': request.get_full_path()})}")


def staff_2fa_required(view):
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = staff_2fa_redirect(request)
        if response is not None:
            return response
        return view(request, *args, **kwargs)

    return wrapped


class Staff2FARequiredMixin:
    def dispatch(self, request, *args, **kwargs):
        response = staff_2fa_redirect(request)
        if response is not None:
            return response
        return super().dispatch(request, *args, **kwargs)


def reviewer_is_verified(request) -> bool:
    """Whether this request comes from staff who may act as a reviewer right now."""
    user = request.user
    return bool(user.is_authenticated and user.is_staff and (not two_factor_required() or is_verified(request)))
