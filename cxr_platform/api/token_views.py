from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .models import ApiToken
from .services import create_api_token, issue_review_token, reviewer_token_ttl, revoke_api_token


class NewTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'lab workstation'.")


def _page(request, *, form=None, new_secret=None, status=200):
    from access.decorators import reviewer_is_verified  # access imports this app; import late

    tokens = ApiToken.objects.filter(user=request.user)
    return render(request, "api/tokens.html", {
        "tokens": tokens, "form": form or NewTokenForm(), "new_secret": new_secret,
        "is_staff": request.user.is_staff, "may_issue_review": reviewer_is_verified(request),
        "review_ttl_minutes": int(reviewer_token_ttl().total_seconds() // 60),
    }, status=status)


@login_required
def token_list(request):
    new_secret = None
    form = NewTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _, new_secret = create_api_token(user=request.user, name=form.cleaned_data["name"])
        form = NewTokenForm()
    return _page(request, form=form, new_secret=new_secret)


@login_required
@require_POST
def token_review_create(request):
    """A reviewer-API token; :func:`issue_review_token` holds the rules (staff, 2FA, lifetime)."""
    from access.decorators import is_verified

    try:
        _, secret = issue_review_token(user=request.user, name=request.POST.get("name") or "reviewer token",
                                       two_factor_verified=is_verified(request))
    except PermissionDenied as exc:
        messages.error(request, str(exc))
        return _page(request, status=403)
    return _page(request, new_secret=secret)


@login_required
@require_POST
def token_revoke(request, token_id: int):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    revoke_api_token(token=token, actor=request.user)
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("api-tokens")
