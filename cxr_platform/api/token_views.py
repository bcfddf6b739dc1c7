from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .models import ApiToken
from .services import create_api_token, revoke_api_token


class NewTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'lab workstation'.")


@login_required
def token_list(request):
    new_secret = None
    form = NewTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _, new_secret = create_api_token(user=request.user, name=form.cleaned_data["name"])
        form = NewTokenForm()
    tokens = ApiToken.objects.filter(user=request.user)
    return render(request, "api/tokens.html", {"tokens": tokens, "form": form, "new_secret": new_secret})


@login_required
@require_POST
def token_revoke(request, token_id: int):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    revoke_api_token(token=token, actor=request.user)
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("api-tokens")
