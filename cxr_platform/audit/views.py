import csv
import json
from datetime import timezone as dt_timezone

from django import forms
from django.core.paginator import Paginator
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from access.decorators import staff_2fa_required

from .models import ANONYMOUS, SYSTEM, AuditEvent
from .selectors import filter_events
from .services import record_event


class AuditFilterForm(forms.Form):
    actor = forms.CharField(
        required=False, max_length=150, help_text="A username, or 'system' (workers) or 'anonymous'.",
        widget=forms.TextInput(attrs={"list": "audit-actors", "placeholder": "username"}),
    )
    action = forms.CharField(
        label="Event type", required=False, max_length=100, help_text="Or its start, e.g. 'auth.' or 'cohort.'",
        widget=forms.TextInput(attrs={"list": "audit-actions", "placeholder": "e.g. auth."}),
    )
    target_type = forms.CharField(
        label="Object type", required=False, max_length=100,
        widget=forms.TextInput(attrs={"list": "audit-target-types", "placeholder": "e.g. generation.cohort"}),
    )
    target_id = forms.CharField(label="Object id", required=False, max_length=100)
    since = forms.DateTimeField(label="From (UTC)", required=False,
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(label="To (UTC)", required=False,
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))


def _filtered(request):
    """The events the filters select; none while the filters are invalid (the form says why).
    Times are read, like the page shows them, in UTC whatever TIME_ZONE says."""
    form = AuditFilterForm(request.GET or None)
    if not form.is_bound:
        return form, filter_events()
    with timezone.override(dt_timezone.utc):
        valid = form.is_valid()
    if not valid:
        return form, filter_events().none()
    return form, filter_events(**{k: v for k, v in form.cleaned_data.items() if v})


def detail_pairs(details) -> list[tuple[str, str]]:
    """An event's details as (key, value) lines for people: scalars as they are, nested
    values as compact JSON; a detail that is not a mapping is one line without a key."""
    if not isinstance(details, dict):
        return [] if details in (None, "", [], {}) else [("", _text(details))]
    return [(str(key), _text(value)) for key, value in sorted(details.items(), key=lambda item: str(item[0]))]


def _text(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
    return str(value)


def _choices(field: str, limit: int = 300) -> list[str]:
    return list(
        AuditEvent.objects.exclude(**{field: ""}).order_by(field).values_list(field, flat=True).distinct()[:limit]
    )


@staff_2fa_required
def audit_log(request):
    form, events = _filtered(request)
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    rows = [{"event": e, "details": detail_pairs(e.details)} for e in page]
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "audit/log.html", {
        "form": form, "page": page, "rows": rows, "query": query.urlencode(),
        "actions": _choices("action"), "target_types": _choices("target_type"),
        "actors": [SYSTEM, ANONYMOUS, *_choices("actor_username")],
    })


def _cell(value) -> str:
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    else:
        text = str(value)
    # Spreadsheet programs run cells that start with these as formulas.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _applied_filters(form) -> dict:
    if not form.is_bound:
        return {}
    return {
        name: value.isoformat() if hasattr(value, "isoformat") else value
        for name, value in form.cleaned_data.items() if value
    }


class _Echo:
    def write(self, value):
        return value


@staff_2fa_required
def audit_log_csv(request):
    form, events = _filtered(request)
    if form.errors:
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
        return HttpResponseBadRequest(f"Invalid filters: {problems}", content_type="text/plain")
    # Who took a copy of the log, and of which part, is itself on the record.
    record_event("audit.exported", actor=request.user, details={"filters": _applied_filters(form), "format": "csv"})
    writer = csv.writer(_Echo())
    header = ["sequence", "occurred_at", "actor", "action", "target_type", "target_id", "ip_address", "user_agent", "details", "mac"]

    def rows():
        yield writer.writerow(header)
        for e in events.iterator(chunk_size=2000):
            yield writer.writerow([
                _cell(v) for v in (
                    e.sequence, e.occurred_at.isoformat(), e.actor_label, e.action, e.target_type,
                    e.target_id, e.ip_address or "", e.user_agent, e.details, e.mac,
                )
            ])

    response = StreamingHttpResponse(rows(), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
    return response
