from __future__ import annotations

import re

from django import forms
from django.contrib.auth.forms import UserCreationForm

from .certificates import MAX_CERTIFICATE_BYTES
from .models import AccessRequest, Profile, Tier, User

ORCID_RE = re.compile(r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")
DATE = forms.DateInput(attrs={"type": "date"})


class RegistrationForm(UserCreationForm):
    email = forms.EmailField(label="E-mail address", help_text="We send a confirmation link here.")

    class Meta:
        model = User
        fields = ("username", "email")

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this e-mail address exists. Log in or reset your password.")
        return email


class ProfileForm(forms.ModelForm):
    class Meta:
        model = Profile
        fields = ("full_name", "institution", "position", "institutional_email", "orcid", "physionet_username", "research_plan")
        widgets = {"research_plan": forms.Textarea(attrs={"rows": 6})}
        help_texts = {
            "orcid": "Optional, e.g. 0000-0002-1825-0097.",
            "research_plan": "Needed for the Weights tier (at least 200 characters).",
        }

    def clean_orcid(self):
        orcid = self.cleaned_data.get("orcid", "").strip()
        if orcid and not ORCID_RE.match(orcid):
            raise forms.ValidationError("An ORCID iD looks like 0000-0002-1825-0097.")
        return orcid


class AttestationForm(forms.Form):
    physionet_username = forms.CharField(label="PhysioNet username", max_length=150)
    confirm = forms.BooleanField(
        label="I am a credentialed PhysioNet user and have signed the data use agreement for MIMIC-CXR on PhysioNet.",
    )


class CertificateForm(forms.Form):
    file = forms.FileField(label="CITI completion report (PDF, at most 10 MB)")
    completed_on = forms.DateField(label="Completion date", widget=DATE)
    expires_on = forms.DateField(label="Expiry date", widget=DATE)

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_CERTIFICATE_BYTES:
            raise forms.ValidationError("The file is larger than 10 MB.")
        return upload


class SignatureForm(forms.Form):
    typed_name = forms.CharField(label="Type your full name to sign", max_length=200)
    text_sha256 = forms.CharField(widget=forms.HiddenInput, max_length=64)


class AccessRequestForm(forms.Form):
    tier = forms.ModelChoiceField(queryset=Tier.objects.filter(is_active=True), to_field_name="slug", empty_label=None)
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}), max_length=5000, help_text="Why you need this tier, and for which project."
    )


class JustificationForm(forms.Form):
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), max_length=5000)


class DecisionForm(forms.Form):
    APPROVE, CHANGES, REJECT, REVOKE = "approve", "request_changes", "reject", "revoke"
    decision = forms.ChoiceField(
        choices=[(APPROVE, "Approve"), (CHANGES, "Request changes"), (REJECT, "Reject"), (REVOKE, "Revoke")],
        widget=forms.RadioSelect,
    )
    expires_on = forms.DateField(required=False, widget=DATE, help_text="For approvals; default: the tier's grant duration.")
    message = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), max_length=5000,
        help_text="Sent to the requester. Required to request changes, reject or revoke.",
    )

    def __init__(self, *args, actions=None, **kwargs):
        super().__init__(*args, **kwargs)
        if actions is not None and not self.is_bound:  # offer only what the workflow allows now
            field = self.fields["decision"]
            field.choices = [c for c in field.choices if c[0] in actions]


class NoteForm(forms.Form):
    text = forms.CharField(label="Internal note (reviewers only)", widget=forms.Textarea(attrs={"rows": 3}), max_length=5000)


class QueueFilterForm(forms.Form):
    tier = forms.ChoiceField(required=False)
    status = forms.ChoiceField(required=False, choices=[("", "Awaiting decision"), *AccessRequest.Status.choices])
    waiting_days = forms.IntegerField(required=False, min_value=0, max_value=3650, label="Waiting at least (days)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tier"].choices = [("", "Any tier"), *Tier.objects.values_list("slug", "name")]


class OTPTokenForm(forms.Form):
    token = forms.CharField(
        label="Six-digit code from your authenticator app", max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def clean_token(self):
        token = re.sub(r"\s", "", self.cleaned_data["token"])
        if not token.isdigit():
            raise forms.ValidationError("Enter the digits shown in your authenticator app.")
        return token
