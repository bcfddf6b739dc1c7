import csv
import json

from django import forms
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render

from access.decorators import staff_2fa_required

from .selectors import filter_events


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=150)
    action = forms.CharField(required=False, max_length=100, help_text="Prefix, e.g. 'auth.' or 'cohort.'")
    target_type = forms.CharField(required=False, max_length=100)
    target_id = forms.CharField(required=False, max_length=100)
    since = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))


def _filtered(request):
    """The events the filters select; none while the filters are invalid (the form says why)."""
    form = AuditFilterForm(request.GET or None)
    if not form.is_bound:
        return form, filter_events()
    if not form.is_valid():
        return form, filter_events().none()
    return form, filter_events(**{k: v for k, v in form.cleaned_data.items() if v})


@staff_member_required
@staff_2fa_required
def audit_log(request):
    form, events = _filtered(request)
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "audit/log.html", {"form": form, "page": page, "query": query.urlencode()})


def _cell(value) -> str:
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    else:
        text = str(value)
    # Spreadsheet programs run cells that start with these as formulas.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Echo:
    def write(self, value):
        return value


@staff_member_required
@staff_2fa_required
def audit_log_csv(request):
    form, events = _filtered(request)
    if form.errors:
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
        return HttpResponseBadRequest(f"Invalid filters: {problems}", content_type="text/plain")
    writer = csv.writer(_Echo())
    header = ["sequence", "occurred_at", "actor", "action", "target_type", "target_id", "ip_address", "user_agent", "details", "mac"]

    def rows():
        yield writer.writerow(header)
        for e in events.iterator(chunk_size=2000):
            yield writer.writerow([
                _cell(v) for v in (
                    e.sequence, e.occurred_at.isoformat(), e.actor_username, e.action, e.target_type,
                    e.target_id, e.ip_address or "", e.user_agent, e.details, e.mac,
                )
            ])

    response = StreamingHttpResponse(rows(), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
    return response
