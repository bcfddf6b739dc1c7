from django.conf import settings
from django.http import HttpResponseServerError
from django.shortcuts import render
from django.template import loader


def home(request):
    return render(request, "home.html")


def bad_request(request, exception=None):
    return render(request, "errors/error.html", {"title": "Bad request", "message": "The request could not be understood."}, status=400)


# The staff areas, by path: what the 403 page calls the page a user was refused.
STAFF_AREAS = (
    ("/review/", "The review queue"),
    ("/audit/", "The audit log"),
    ("/screening/", "The privacy quarantine"),
    ("/admin/", "The admin"),
)
STAFF_NEEDS = "a staff account (reviewer or administrator) that has passed two-factor authentication"


def _area(path: str) -> str | None:
    return next((label for prefix, label in STAFF_AREAS if path.startswith(prefix)), None)


def forbidden_context(request, exception=None) -> dict:
    """What the one "not allowed" page says: which page, what access it needs, where to get it.

    ``reason`` picks the advice: ``login`` (not signed in), ``2fa`` (staff who have not passed
    two-factor authentication this session), ``staff`` (a staff page, a non-staff user),
    ``admin_permission`` (staff without the admin permission asked for), ``capability``
    (an access tier is missing: the Access page) or ``other``."""
    from access.decorators import is_verified, two_factor_required
    from access.policy import AccessDenied

    user = getattr(request, "user", None)
    signed_in = bool(user is not None and user.is_authenticated)
    is_staff = bool(signed_in and user.is_active and user.is_staff)
    area = _area(request.path)
    context = {"title": "Not allowed", "page_name": area or "This page", "detail": "", "next": request.get_full_path()}
    if not signed_in:
        return {**context, "reason": "login", "needs": "you to log in"}
    if getattr(exception, "needs_staff", False) or (area and not is_staff):
        if is_staff and two_factor_required() and not is_verified(request):
            return {**context, "reason": "2fa", "needs": STAFF_NEEDS, "has_device": _has_device(user)}
        return {**context, "reason": "staff", "needs": STAFF_NEEDS, "detail": str(exception or "")}
    if is_staff and two_factor_required() and not is_verified(request):
        return {**context, "reason": "2fa", "needs": STAFF_NEEDS, "has_device": _has_device(user)}
    if isinstance(exception, AccessDenied):
        return {**context, "reason": "capability", "needs": "an access grant for it", "detail": str(exception)}
    if is_staff and area == "The admin":
        return {**context, "reason": "admin_permission", "needs": "an admin permission your account does not have"}
    return {**context, "reason": "other", "needs": "access you do not have"}


def _has_device(user) -> bool:
    from django_otp import user_has_device

    return user_has_device(user, confirmed=True)


def permission_denied(request, exception=None):
    return render(request, "errors/403.html", forbidden_context(request, exception), status=403)


def page_not_found(request, exception=None):
    return render(request, "errors/error.html", {"title": "Not found", "message": "There is nothing here, or it is not yours to see."}, status=404)


def server_error(request):
    # Rendered without the request's context processors: when the database is the
    # thing that failed, looking up request.user would fail again inside the handler.
    html = loader.render_to_string(
        "errors/error.html",
        {
            "title": "Something went wrong",
            "message": "The error has been logged. Please try again later.",
            "ENVIRONMENT": settings.ENVIRONMENT,
        },
    )
    return HttpResponseServerError(html)
