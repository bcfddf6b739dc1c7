"""/api/v1/review/…: the reviewer's queue and decisions, under the browser's rules."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from access.models import AccessGrant, AccessRequest, PhysioNetAttestation
from cxr_platform.api.services import create_api_token, issue_review_token
from cxr_platform.audit.models import AuditEvent
from tests.access.factories import give_attestation, give_certificate, give_credentials, login_verified, make_request
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db
S = AccessRequest.Status
QUEUE = "/api/v1/review/requests"


def reviewer_api(user) -> APIClient:
    """A client acting with ``user``'s reviewer token."""
    _, secret = issue_review_token(user=user, name="tests", two_factor_verified=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def post(client, url, body=None):
    return client.post(url, body or {}, format="json")


@pytest.fixture
def api(reviewer):
    return reviewer_api(reviewer)


@pytest.fixture
def pending(credentialed):
    return make_request(credentialed, "generate", status=S.SUBMITTED)


# --- Who may call it ----------------------------------------------------------------------------


def test_verified_reviewer_session_may_use_the_api(reviewer_client, pending):
    response = reviewer_client.get(QUEUE)
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [pending.pk]


def test_staff_session_without_2fa_is_refused(client, reviewer, pending):
    TOTPDevice.objects.create(user=reviewer, name="phone", confirmed=True)
    client.force_login(reviewer)
    response = client.get(QUEUE)
    assert response.status_code == 403 and "two-factor" in response.json()["detail"]


def test_researcher_is_refused_even_with_2fa(client, researcher):
    login_verified(client, researcher)
    response = client.get(QUEUE)
    assert response.status_code == 403 and "staff" in response.json()["detail"]


def test_researcher_token_cannot_approve(researcher, pending):
    _, secret = create_api_token(user=UserFactory(), name="plain")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = post(client, f"{QUEUE}/{pending.pk}/approve")
    assert response.status_code == 403 and set(response.json()) == {"detail"}
    pending.refresh_from_db()
    assert pending.status == S.SUBMITTED


def test_anonymous_is_asked_for_credentials():
    assert APIClient().get(QUEUE).status_code in (401, 403)


# --- Queue and detail ---------------------------------------------------------------------------


def test_queue_holds_only_requests_awaiting_a_decision(api, credentialed, pending):
    make_request(UserFactory(), "export", status=S.DRAFT)
    make_request(UserFactory(), "export", status=S.REJECTED)
    assert [r["id"] for r in api.get(QUEUE).json()["results"]] == [pending.pk]


def test_queue_filters_by_tier_and_status(api, credentialed, pending):
    rejected = make_request(UserFactory(), "export", status=S.REJECTED)
    assert api.get(QUEUE, {"tier": "export"}).json()["results"] == []
    assert [r["id"] for r in api.get(QUEUE, {"status": "rejected"}).json()["results"]] == [rejected.pk]


@pytest.mark.parametrize("query", [{"status": "nonsense"}, {"waiting_days": "-1"}, {"tier": "a b"}])
def test_bad_queue_filter_is_a_400(api, query):
    assert api.get(QUEUE, query).status_code == 400


def test_queue_costs_the_same_queries_for_more_requests(reviewer_client):
    def queries_for_queue():
        with CaptureQueriesContext(connection) as captured:
            assert reviewer_client.get(QUEUE).status_code == 200
        return len(captured)

    for _ in range(2):
        make_request(UserFactory(), "generate", status=S.SUBMITTED)
    few = queries_for_queue()
    for _ in range(4):
        make_request(UserFactory(), "export", status=S.SUBMITTED)
    assert queries_for_queue() == few


def test_detail_shows_credentials_approvals_and_allowed_actions(api, pending):
    data = api.get(f"{QUEUE}/{pending.pk}").json()
    assert data["requester"]["username"] == pending.user.username
    assert all(data["credentials"]["held"].values()) and data["credentials"]["missing_for_tier"] == []
    assert set(data["allowed_actions"]) == {"approve", "reject", "request_changes"}
    assert data["approvals"] == [] and data["approvals_required"] == 1 and data["grant"] is None


def test_unknown_request_is_a_404(api):
    assert api.get(f"{QUEUE}/999999").status_code == 404
    assert post(api, f"{QUEUE}/999999/approve").status_code == 404


# --- Decisions ----------------------------------------------------------------------------------


def test_approve_creates_the_grant_and_audits_decision_and_token_use(api, reviewer, pending):
    response = post(api, f"{QUEUE}/{pending.pk}/approve", {"message": "Welcome."})
    assert response.status_code == 200
    assert response.json()["status"] == "approved" and response.json()["grant"]["status"] == "active"
    assert AccessGrant.objects.get(request=pending).user == pending.user
    decision = AuditEvent.objects.get(action="access_request.approved", target_id=str(pending.pk))
    assert decision.actor_username == reviewer.username
    use = AuditEvent.objects.get(action="api_token.used_for_review")
    assert use.details["action"] == "approve" and use.details["object"] == f"access.accessrequest:{pending.pk}"


def test_reviewer_cannot_approve_their_own_request(reviewer):
    give_credentials(reviewer)
    own = make_request(reviewer, "generate", status=S.SUBMITTED)
    response = post(reviewer_api(reviewer), f"{QUEUE}/{own.pk}/approve")
    assert response.status_code == 400 and "your own request" in str(response.json())
    own.refresh_from_db()
    assert own.status == S.SUBMITTED and not AuditEvent.objects.filter(action="api_token.used_for_review").exists()


def test_weights_need_two_different_reviewers_through_the_api(api, second_reviewer, credentialed):
    weights = make_request(credentialed, "weights", status=S.SUBMITTED)
    first = post(api, f"{QUEUE}/{weights.pk}/approve")
    assert first.status_code == 200 and first.json()["status"] == "submitted"
    assert first.json()["approvals_this_round"] == 1
    again = post(api, f"{QUEUE}/{weights.pk}/approve")
    assert again.status_code == 400 and "already approved" in str(again.json())
    assert not AccessGrant.objects.filter(request=weights).exists()
    second = post(reviewer_api(second_reviewer), f"{QUEUE}/{weights.pk}/approve")
    assert second.status_code == 200 and second.json()["status"] == "approved"
    assert [a["reviewer"] for a in second.json()["approvals"]] == ["rev-one", "rev-two"]


def test_one_browser_and_one_api_approval_grant_weights(client, reviewer, second_reviewer, credentialed):
    weights = make_request(credentialed, "weights", status=S.SUBMITTED)
    login_verified(client, reviewer)
    client.post(reverse("review-request", args=[weights.pk]), {"form": "decision", "decision": "approve"})
    assert post(reviewer_api(reviewer), f"{QUEUE}/{weights.pk}/approve").status_code == 400  # same person again
    response = post(reviewer_api(second_reviewer), f"{QUEUE}/{weights.pk}/approve")
    assert response.json()["status"] == "approved"
    assert AccessGrant.objects.filter(request=weights, status=AccessGrant.Status.ACTIVE).exists()


def test_approval_with_a_past_expiry_date_is_a_400(api, pending):
    past = (timezone.localdate() - timedelta(days=1)).isoformat()
    assert post(api, f"{QUEUE}/{pending.pk}/approve", {"expires_on": past}).status_code == 400
    assert post(api, f"{QUEUE}/{pending.pk}/approve", {"expires_on": "soon"}).status_code == 400


def test_deny_needs_a_reason(api, pending):
    assert post(api, f"{QUEUE}/{pending.pk}/deny").status_code == 400
    response = post(api, f"{QUEUE}/{pending.pk}/deny", {"reason": "Not a research use."})
    assert response.status_code == 200
    assert response.json()["status"] == "rejected" and response.json()["decision_reason"] == "Not a research use."


def test_request_changes_sends_the_message_to_the_requester(api, pending, mailoutbox,
                                                           django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, f"{QUEUE}/{pending.pk}/request-changes", {"message": "Name the project."})
    assert response.json()["status"] == "changes_requested"
    assert response.json()["history"][-1]["message"] == "Name the project."
    assert any("Name the project." in m.body for m in mailoutbox)


def test_decision_refused_by_the_workflow_is_a_400(api, credentialed):
    draft = make_request(credentialed, "generate", status=S.DRAFT)
    response = post(api, f"{QUEUE}/{draft.pk}/approve")
    assert response.status_code == 400 and "not possible" in str(response.json())


def test_revoke_ends_the_request_and_its_grant(api, pending):
    post(api, f"{QUEUE}/{pending.pk}/approve")
    response = post(api, f"{QUEUE}/{pending.pk}/revoke", {"reason": "Left the institution."})
    assert response.json()["status"] == "revoked" and response.json()["grant"]["status"] == "revoked"


def test_revoke_grant_by_id(api, pending):
    post(api, f"{QUEUE}/{pending.pk}/approve")
    grant = AccessGrant.objects.get(request=pending)
    response = post(api, f"/api/v1/review/grants/{grant.pk}/revoke", {"reason": "Misuse."})
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    assert AuditEvent.objects.filter(action="grant.revoked", target_id=str(grant.pk)).exists()


# --- Credentials --------------------------------------------------------------------------------


@pytest.fixture
def uploaded(researcher):
    return give_certificate(researcher, verified=False)


def test_certificate_queue_lists_uploads_awaiting_verification(api, uploaded):
    give_certificate(UserFactory(), verified=True)
    assert [c["id"] for c in api.get("/api/v1/review/certificates").json()["results"]] == [uploaded.pk]


def test_verify_certificate_is_audited(api, reviewer, uploaded):
    response = post(api, f"/api/v1/review/certificates/{uploaded.pk}/verify")
    assert response.status_code == 200 and response.json()["review_status"] == "verified"
    event = AuditEvent.objects.get(action="certificate.verified")
    assert event.actor_username == reviewer.username and event.target_id == str(uploaded.pk)


def test_reject_certificate_needs_a_reason_and_is_final(api, uploaded):
    assert post(api, f"/api/v1/review/certificates/{uploaded.pk}/reject").status_code == 400
    assert post(api, f"/api/v1/review/certificates/{uploaded.pk}/reject", {"reason": "Wrong course."}).status_code == 200
    again = post(api, f"/api/v1/review/certificates/{uploaded.pk}/verify")
    assert again.status_code == 400 and "already rejected" in str(again.json())


def test_reviewer_cannot_verify_their_own_certificate(reviewer):
    own = give_certificate(reviewer, verified=False)
    response = post(reviewer_api(reviewer), f"/api/v1/review/certificates/{own.pk}/verify")
    assert response.status_code == 400 and "your own" in str(response.json())


def test_certificate_pdf_can_be_read_and_each_read_is_audited(api, uploaded):
    response = api.get(f"/api/v1/review/certificates/{uploaded.pk}/file", HTTP_ACCEPT="application/pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert AuditEvent.objects.filter(action="certificate.viewed", target_id=str(uploaded.pk)).exists()


def test_physionet_check_is_recorded(api, reviewer, researcher):
    attestation = give_attestation(researcher, checked=False)
    response = post(api, f"/api/v1/review/physionet-attestations/{attestation.pk}/verify")
    assert response.status_code == 200 and response.json()["checked_by"] == reviewer.username
    assert PhysioNetAttestation.objects.get(pk=attestation.pk).checked_by == reviewer


def test_other_staff_cannot_reach_the_reviewer_api_with_an_unverified_session(client, pending):
    client.force_login(StaffFactory())
    assert client.post(f"{QUEUE}/{pending.pk}/approve", {}, content_type="application/json").status_code == 403
