"""The browser's cohort form: friendly fields that build the same JSON the API takes."""

from __future__ import annotations

import json
import secrets

from django import forms

from access import capabilities as caps
from access.policy import access_policy
from registry.models import ModelVersion

from .selectors import SEX_LABELS, finding_labels, human_label
from .specification import reference_table


def preview_for_display(preview: dict, model_version) -> dict:
    """The plan's preview with the words people read (``Pleural effusion``, ``Female``, ``White``) next
    to the keys the API uses; the keys stay as they are."""
    labels = finding_labels(model_version)
    naming = {
        "sex": lambda key: SEX_LABELS.get(key, key),
        "race": lambda key: str(key).title(),
        "findings": lambda key: human_label(key, labels),
    }
    titles = {"sex": "Sex", "race": "Race / ethnicity", "view": "View", "age": "Age", "findings": "Findings"}
    races = sorted({race for row in preview["cells"].values() for race in row})
    return {
        **preview,
        "race_columns": [str(race).title() for race in races],
        "cell_rows": [
            {"label": SEX_LABELS.get(sex, sex), "counts": [row.get(race, 0) for race in races]}
            for sex, row in sorted(preview["cells"].items())
        ],
        "count_tables": [
            {"title": titles.get(attribute, attribute.capitalize()),
             "rows": [(naming.get(attribute, str)(category), n) for category, n in counts.items()]}
            for attribute, counts in preview["counts"].items()
        ],
    }


def _share_field(label: str) -> forms.FloatField:
    return forms.FloatField(label=label, min_value=0, max_value=1, required=False,
                            widget=forms.NumberInput(attrs={"step": "0.01", "placeholder": "from preset"}))


class CohortForm(forms.Form):
    name = forms.CharField(max_length=200)
    model_version = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), required=False,
                                           empty_label="Newest active version")
    size = forms.IntegerField(min_value=1, initial=8, help_text="Number of synthetic patients (images).")
    seed = forms.IntegerField(min_value=0, required=False, help_text="Leave empty for a random seed; the preview fixes it.")
    preset = forms.ChoiceField(
        choices=[("balanced", "Balanced: equal shares in every cell"), ("reference", "Match the reference table"),
                 ("", "None: I give every share")],
        required=False, initial="balanced",
    )
    female_share = _share_field("Share of women")
    age_min = forms.IntegerField(min_value=18, max_value=91, required=False, label="Youngest age")
    age_max = forms.IntegerField(min_value=18, max_value=91, required=False, label="Oldest age (91 = 90 and over)")
    pa_share = _share_field("Share of PA views (the rest AP)")
    impressions = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Optional: free-text impressions, one per line, used instead of finding prevalences.",
    )
    steps = forms.IntegerField(required=False, min_value=1, help_text="Denoising steps (default from the model).")
    guidance_scale = forms.FloatField(required=False, min_value=0, help_text="Guidance (default from the model).")
    advanced = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), label="Advanced (JSON, merged last)",
        help_text='e.g. {"age": {"bins": [{"min": 40, "max": 59, "weight": 2}, {"min": 60, "max": 91, "weight": 1}]}, '
                  '"group_findings": [{"where": {"race": "BLACK"}, "findings": {"cardiomegaly": 0.4}}]}',
    )

    # One token per form issued: a second submit with it (a double click, a resent POST, the back button)
    # returns the cohort the first one created instead of making another.
    submission_token = forms.RegexField(regex=r"^[A-Za-z0-9_-]{16,64}$", required=False, widget=forms.HiddenInput)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        versions = access_policy(user).model_version_filter(caps.GENERATE).filter(status=ModelVersion.Status.ACTIVE)
        self.fields["model_version"].queryset = versions
        defaults = (versions.order_by("-registered_at").first() or ModelVersion(defaults={})).defaults
        self.races = list(defaults.get("races", []))
        self.findings = {k: v["label"] for k, v in sorted(defaults.get("findings", {}).items(), key=lambda kv: kv[1]["label"])}
        for race in self.races:
            self.fields[f"race_{race}"] = _share_field(f"{race.title()}")
        for key, label in self.findings.items():
            self.fields[f"finding_{key}"] = forms.FloatField(
                label=label, min_value=0, max_value=1, required=False,
                widget=forms.NumberInput(attrs={"step": "0.01", "placeholder": "0"}),
            )

    @staticmethod
    def new_submission_token() -> str:
        return secrets.token_urlsafe(24)

    def race_fields(self):
        return [self[f"race_{race}"] for race in self.races]

    def finding_fields(self):
        return [self[f"finding_{key}"] for key in self.findings]

    def _race_shares(self, given: dict, preset: str) -> dict:
        """Race shares from the fields filled in: the empty ones share what is left in the preset's
        proportions (all 0 without a preset), so "from preset" means what it says."""
        if preset == "reference":
            table = reference_table()["race"]
            base = {race: float(table.get(race, 0.0)) for race in self.races}
        elif preset == "balanced":
            base = {race: 1.0 for race in self.races}
        else:
            base = {race: 0.0 for race in self.races}
        empty = [race for race in self.races if race not in given]
        rest = max(0.0, 1.0 - sum(given.values()))
        weight = sum(base[race] for race in empty)
        shares = dict(given)
        for race in empty:
            shares[race] = round(rest * base[race] / weight, 6) if weight else 0.0
        return {race: shares[race] for race in self.races}

    def clean_advanced(self):
        text = self.cleaned_data["advanced"].strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}).") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("The advanced specification must be a JSON object.")
        return value

    def specification(self) -> dict:
        """The API's JSON for what was entered."""
        c = self.cleaned_data
        data = {"name": c["name"], "size": c["size"], "preset": c["preset"] or None}
        if c["model_version"]:
            data["model_version"] = c["model_version"].pk
        if c["seed"] is not None:
            data["seed"] = c["seed"]
        if c["female_share"] is not None:
            data["sex"] = {"F": c["female_share"], "M": round(1 - c["female_share"], 6)}
        races = {race: c[f"race_{race}"] for race in self.races if c[f"race_{race}"] is not None}
        if races:
            data["race"] = self._race_shares(races, c["preset"])
        if c["age_min"] is not None or c["age_max"] is not None:
            data["age"] = {"min": c["age_min"] if c["age_min"] is not None else 18,
                           "max": c["age_max"] if c["age_max"] is not None else 91}
        if c["pa_share"] is not None:
            data["view"] = {"PA": c["pa_share"], "AP": round(1 - c["pa_share"], 6)}
        findings = {key: c[f"finding_{key}"] for key in self.findings if c[f"finding_{key}"]}
        if findings:
            data["findings"] = findings
        if c["impressions"].strip():
            data["impressions"] = c["impressions"]
        sampling = {k: c[k] for k in ("steps", "guidance_scale") if c[k] is not None}
        if sampling:
            data["sampling"] = sampling
        data.update(c["advanced"])
        return data
