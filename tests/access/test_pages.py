"""Researcher and reviewer pages, including guessing other users' ids."""

import html

import pytest
from django.urls import reverse

from access import capabilities as caps
from access import services
from access.models import AccessRequest
from access.policy import access_policy
from tests.access.factories import give_attestation, give_credentials, login_verified, make_request
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
S = AccessRequest.Status


def test_dashboard_lists_what_is_missing_per_tier(client, researcher):
    client.force_login(researcher)
    page = client.get(reverse("access-dashboard")).content.decode()
    assert "Generate" in page and "Weights" in page
    assert html.escape(caps.CREDENTIALS[caps.TRAINING]) in page
    assert html.escape(caps.CREDENTIALS[caps.RESEARCH_PLAN]) in page


def test_dashboard_of_a_credentialed_user_shows_requests_and_grants(client, credentialed, reviewer):
    request_obj = make_request(credentialed, "generate", status=S.SUBMITTED)
    services.approve_request(request_obj=request_obj, reviewer=reviewer)
    client.force_login(credentialed)
    response = client.get(reverse("access-dashboard"))
    page = response.content.decode()
    assert reverse("access-request-detail", args=[request_obj.pk]) in page
    assert "Active" in page


def test_profile_form_validates_orcid(client, researcher):
    client.force_login(researcher)
    response = client.post(reverse("access-profile"), {"full_name": "Rita", "orcid": "12-34"})
    assert response.status_code == 200 and "0000-0002-1825-0097" in response.content.decode()
    response = client.post(reverse("access-profile"), {
        "full_name": "Rita Levi", "institution": "Uni", "position": "Fellow", "institutional_email": "r@uni.example",
        "orcid": "0000-0002-1825-0097", "physionet_username": "rlevi", "research_plan": "",
    })
    assert response.status_code == 302
    researcher.profile.refresh_from_db()
    assert researcher.profile.is_complete


def test_physionet_attestation_needs_the_checkbox(client, researcher):
    client.force_login(researcher)
    response = client.post(reverse("access-physionet"), {"physionet_username": "rlevi"})
    assert response.status_code == 200 and not researcher.physionet_attestations.exists()
    response = client.post(reverse("access-physionet"), {"physionet_username": "rlevi", "confirm": "on"})
    assert response.status_code == 302
    attestation = researcher.physionet_attestations.get()
    assert attestation.physionet_username == "rlevi" and attestation.checked_at is None


def test_request_create_then_submit_through_the_pages(client, credentialed):
    client.force_login(credentialed)
    response = client.post(reverse("access-request-new"), {"tier": "generate", "justification": "Bias study"})
    request_obj = AccessRequest.objects.get(user=credentialed)
    assert response["Location"] == reverse("access-request-detail", args=[request_obj.pk])
    client.post(reverse("access-request-detail", args=[request_obj.pk]), {"action": "submit"})
    request_obj.refresh_from_db()
    assert request_obj.status == S.SUBMITTED


def test_submitting_without_credentials_shows_what_is_missing(client, researcher):
    request_obj = make_request(researcher, "generate")
    client.force_login(researcher)
    response = client.post(reverse("access-request-detail", args=[request_obj.pk]), {"action": "submit"}, follow=True)
    assert "Before submitting, provide" in response.content.decode()
    request_obj.refresh_from_db()
    assert request_obj.status == S.DRAFT


def test_unknown_tier_in_a_request_is_a_form_error(client, credentialed):
    client.force_login(credentialed)
    response = client.post(reverse("access-request-new"), {"tier": "root", "justification": "x"})
    assert response.status_code == 200 and not AccessRequest.objects.exists()


def test_other_users_requests_are_404_to_read_and_to_change(client, credentialed):
    request_obj = make_request(credentialed, "generate")
    intruder = UserFactory()
    give_credentials(intruder)
    client.force_login(intruder)
    url = reverse("access-request-detail", args=[request_obj.pk])
    assert client.get(url).status_code == 404
    assert client.post(url, {"action": "save", "justification": "mine now"}).status_code == 404
    assert client.post(url, {"action": "submit"}).status_code == 404
    request_obj.refresh_from_db()
    assert request_obj.status == S.DRAFT and request_obj.justification == "A study."


def test_researchers_cannot_post_decisions(client, credentialed):
    request_obj = make_request(credentialed, "generate", status=S.SUBMITTED)
    client.force_login(UserFactory())
    response = client.post(reverse("review-request", args=[request_obj.pk]), {"form": "decision", "decision": "approve"})
    assert response.status_code == 403
    request_obj.refresh_from_db()
    assert request_obj.status == S.SUBMITTED


def test_review_queue_filters_by_tier_status_and_waiting_time(reviewer_client, credentialed):
    from datetime import timedelta

    from django.utils import timezone

    old = make_request(credentialed, "generate", status=S.SUBMITTED)
    AccessRequest.objects.filter(pk=old.pk).update(submitted_at=timezone.now() - timedelta(days=10))
    other = UserFactory()
    new = make_request(other, "weights", status=S.RESUBMITTED)
    draft = make_request(UserFactory(), "export")

    def shown(**query):
        return [r.pk for r in reviewer_client.get(reverse("review-queue"), query).context["requests"]]

    assert shown() == [old.pk, new.pk]
    assert shown(tier="weights") == [new.pk]
    assert shown(waiting_days=7) == [old.pk]
    assert shown(status="draft") == [draft.pk]
    bad = reviewer_client.get(reverse("review-queue"), {"waiting_days": "soon"})
    assert bad.status_code == 200 and list(bad.context["requests"]) == []


def test_review_page_shows_everything_a_reviewer_needs(reviewer_client, credentialed, reviewer):
    request_obj = make_request(credentialed, "generate", status=S.SUBMITTED)
    services.add_note(request_obj=request_obj, reviewer=reviewer, text="Called the PI, all fine.")
    page = reviewer_client.get(reverse("review-request", args=[request_obj.pk])).content.decode()
    profile = credentialed.profile
    for expected in (profile.full_name, profile.institution, profile.physionet_username,
                     reverse("access-certificate-file", args=[credentialed.training_certificates.get().pk]),
                     "MIMIC-CXR data use agreement", "Called the PI, all fine.", 'name="decision"'):
        assert expected in page


def test_review_notes_are_never_shown_to_the_requester(client, credentialed, reviewer):
    request_obj = make_request(credentialed, "generate", status=S.SUBMITTED)
    services.add_note(request_obj=request_obj, reviewer=reviewer, text="Internal: slow to answer.")
    client.force_login(credentialed)
    assert "Internal: slow to answer." not in client.get(reverse("access-request-detail", args=[request_obj.pk])).content.decode()


def test_reviewer_approves_through_the_page(reviewer_client, credentialed):
    request_obj = make_request(credentialed, "generate", status=S.SUBMITTED)
    response = reviewer_client.post(
        reverse("review-request", args=[request_obj.pk]), {"form": "decision", "decision": "approve", "expires_on": "2099-01-01"}
    )
    assert response.status_code == 302
    request_obj.refresh_from_db()
    assert request_obj.status == S.APPROVED and request_obj.grant.expires_at.year == 2099
    assert access_policy(credentialed).can(caps.GENERATE)


def test_a_refused_decision_is_explained_not_a_500(reviewer_client, credentialed):
    request_obj = make_request(credentialed, "generate", status=S.SUBMITTED)
    response = reviewer_client.post(
        reverse("review-request", args=[request_obj.pk]), {"form": "decision", "decision": "reject", "message": ""}, follow=True
    )
    assert response.status_code == 200 and "Give a reason" in response.content.decode()
    response = reviewer_client.post(reverse("review-request", args=[request_obj.pk]), {"form": "decision", "decision": "revoke", "message": "x"})
    assert response.status_code == 200 and "Revoke is not possible" in response.content.decode()


def test_reviewer_records_the_physionet_check(reviewer_client, researcher, reviewer):
    attestation = give_attestation(researcher, checked=False)
    request_obj = make_request(researcher, "generate", status=S.SUBMITTED)
    reviewer_client.post(reverse("review-request", args=[request_obj.pk]), {"form": "physionet", "attestation": attestation.pk})
    attestation.refresh_from_db()
    assert attestation.checked_by == reviewer and attestation.checked_at is not None


def test_physionet_check_cannot_target_another_users_attestation(reviewer_client, researcher):
    stranger_attestation = give_attestation(UserFactory(), checked=False)
    request_obj = make_request(researcher, "generate", status=S.SUBMITTED)
    reviewer_client.post(reverse("review-request", args=[request_obj.pk]), {"form": "physionet", "attestation": stranger_attestation.pk})
    stranger_attestation.refresh_from_db()
    assert stranger_attestation.checked_at is None


def test_unknown_review_request_is_404(reviewer_client):
    assert reviewer_client.get("/review/requests/999999/").status_code == 404


@pytest.mark.parametrize("name", [
    "access-dashboard", "access-profile", "access-physionet", "access-certificate-upload", "access-request-new",
])
def test_every_researcher_page_renders(client, researcher, name):
    client.force_login(researcher)
    response = client.get(reverse(name))
    assert response.status_code == 200
    assert "<form" in response.content.decode() or name == "access-dashboard"


@pytest.mark.parametrize("name", ["login", "register", "password_reset", "password_reset_done"])
def test_every_account_page_renders_for_visitors(client, db, name):
    assert client.get(reverse(name)).status_code == 200


def test_nav_shows_access_to_researchers_and_review_to_staff(client, researcher, reviewer):
    client.force_login(researcher)
    page = client.get(reverse("access-dashboard")).content.decode()
    assert f'href="{reverse("access-dashboard")}"' in page and f'href="{reverse("review-queue")}"' not in page
    login_verified(client, reviewer)
    assert f'href="{reverse("review-queue")}"' in client.get(reverse("review-queue")).content.decode()


def test_double_signing_is_refused_cleanly(credentialed):
    from django.core.exceptions import ValidationError

    from access.models import Agreement

    version = Agreement.objects.get(slug="platform-terms").current_version
    with pytest.raises(ValidationError, match="already signed"):
        services.sign_agreement(user=credentialed, version=version, typed_name=credentialed.profile.full_name, shown_sha256=version.sha256)
