"""The request state machine: every allowed transition, every refused one, the two-reviewer rule,
and that each transition is audited and e-mailed to the requester."""

import itertools
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from access import capabilities as caps
from access import services, workflow
from access.models import AccessGrant, AccessRequest, Tier
from access.policy import access_policy
from cxr_platform.audit.models import AuditEvent
from tests.access.factories import give_credentials, make_request
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db
S = AccessRequest.Status


def run(action, request_obj, *, requester, reviewer):
    """Take ``action`` on ``request_obj`` as the person the table says takes it."""
    if action in (workflow.SUBMIT, workflow.RESUBMIT):
        return services.submit_request(request_obj=request_obj, actor=requester)
    if action == workflow.REQUEST_CHANGES:
        return services.request_changes(request_obj=request_obj, reviewer=reviewer, message="Please add your project.")
    if action == workflow.APPROVE:
        return services.approve_request(request_obj=request_obj, reviewer=reviewer)
    if action == workflow.REJECT:
        return services.reject_request(request_obj=request_obj, reviewer=reviewer, reason="Not a MIMIC user.")
    if action == workflow.REVOKE:
        return services.revoke_request(request_obj=request_obj, reviewer=reviewer, reason="Broke the agreement.")
    if action == workflow.EXPIRE:
        grant = request_obj.grant
        AccessGrant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        services.expire_grant(grant=grant)
        request_obj.refresh_from_db()
        return request_obj
    raise AssertionError(action)


@pytest.fixture
def requester(db):
    user = UserFactory(username="req")
    give_credentials(user)
    return user


@pytest.fixture
def reviewer(db):
    return StaffFactory(username="rev")


def request_in(status, requester, slug="generate"):
    request_obj = make_request(requester, slug, status=status)
    if status in (S.APPROVED, S.REVOKED, S.EXPIRED):
        now = timezone.now()
        AccessGrant.objects.create(
            user=requester, tier=request_obj.tier, request=request_obj, granted_at=now, expires_at=now + timedelta(days=30),
            status={S.APPROVED: "active", S.REVOKED: "revoked", S.EXPIRED: "expired"}[status],
        )
    return request_obj


@pytest.mark.parametrize("transition", workflow.TRANSITIONS, ids=lambda t: f"{t.source}-{t.action}")
def test_each_allowed_transition(transition, requester, reviewer, django_capture_on_commit_callbacks):
    request_obj = request_in(transition.source, requester)
    with django_capture_on_commit_callbacks(execute=True):
        result = run(transition.action, request_obj, requester=requester, reviewer=reviewer)
    result.refresh_from_db()
    assert result.status == transition.target
    event = AuditEvent.objects.filter(action=f"access_request.{transition.target}", target_id=str(request_obj.pk)).get()
    assert event.details["from"] == transition.source and event.details["to"] == transition.target
    assert event.actor == ({workflow.REQUESTER: requester, workflow.REVIEWER: reviewer, workflow.SYSTEM: None}[transition.by])
    assert result.events.filter(from_status=transition.source, to_status=transition.target).exists()
    to_requester = [m for m in mail.outbox if m.to == [requester.email]]
    assert len(to_requester) == 1
    assert S(transition.target).label.lower() in to_requester[0].subject
    to_reviewers = [m for m in mail.outbox if m.to != [requester.email]]
    if transition.target in (S.SUBMITTED, S.RESUBMITTED):  # reviewers hear of requests waiting for them
        assert [m.bcc for m in to_reviewers] == [[reviewer.email]]
    else:
        assert to_reviewers == []


ALLOWED = {(t.source, t.action) for t in workflow.TRANSITIONS}
REFUSED = [(s, a) for s, a in itertools.product(S.values, workflow.ACTION_LABELS) if (s, a) not in ALLOWED
           and not (a == workflow.RESUBMIT and s == S.DRAFT) and not (a == workflow.SUBMIT and s == S.CHANGES_REQUESTED)]


@pytest.mark.parametrize("status,action", REFUSED, ids=lambda v: str(v))
def test_each_refused_transition(status, action, requester, reviewer):
    request_obj = request_in(status, requester)
    if action == workflow.EXPIRE:  # only the system expires, through expire_grant; the table refuses the rest
        with pytest.raises(workflow.TransitionRefused, match="not possible"):
            workflow.transition_for(status, action)
        return
    before = AuditEvent.objects.count()
    with pytest.raises(ValidationError):
        run(action, request_obj, requester=requester, reviewer=reviewer)
    request_obj.refresh_from_db()
    assert request_obj.status == status
    assert AuditEvent.objects.count() == before


def test_the_table_is_the_only_source_of_truth():
    assert workflow.allowed_actions(S.SUBMITTED, workflow.REVIEWER) == [workflow.REQUEST_CHANGES, workflow.APPROVE, workflow.REJECT]
    assert workflow.allowed_actions(S.CHANGES_REQUESTED, workflow.REQUESTER) == [workflow.RESUBMIT]
    assert workflow.allowed_actions(S.REJECTED, workflow.REVIEWER) == []


def test_full_round_trip_with_changes_requested(requester, reviewer):
    request_obj = services.create_request(user=requester, tier=Tier.objects.get(slug="generate"), justification="Study A")
    request_obj = services.submit_request(request_obj=request_obj, actor=requester)
    request_obj = services.request_changes(request_obj=request_obj, reviewer=reviewer, message="Which dataset?")
    services.update_request(request_obj=request_obj, actor=requester, justification="Study A on MIMIC-CXR")
    request_obj = services.submit_request(request_obj=request_obj, actor=requester)
    assert request_obj.status == S.RESUBMITTED and request_obj.round == 2
    request_obj = services.request_changes(request_obj=request_obj, reviewer=reviewer, message="And the hospital?")
    request_obj = services.submit_request(request_obj=request_obj, actor=requester)
    request_obj = services.approve_request(request_obj=request_obj, reviewer=reviewer)
    assert request_obj.status == S.APPROVED
    grant = request_obj.grant
    assert grant.expires_at - grant.granted_at == timedelta(days=365)
    assert access_policy(requester).can(caps.GENERATE)


def test_approval_with_an_explicit_expiry_date(requester, reviewer):
    request_obj = request_in(S.SUBMITTED, requester)
    day = timezone.localdate() + timedelta(days=30)
    services.approve_request(request_obj=request_obj, reviewer=reviewer, expires_on=day)
    assert timezone.localtime(request_obj.grant.expires_at).date() == day


def test_approval_with_a_past_expiry_date_is_refused(requester, reviewer):
    request_obj = request_in(S.SUBMITTED, requester)
    with pytest.raises(ValidationError, match="future"):
        services.approve_request(request_obj=request_obj, reviewer=reviewer, expires_on=timezone.localdate() - timedelta(days=1))


def test_reason_is_required_to_reject_revoke_or_request_changes(requester, reviewer):
    request_obj = request_in(S.SUBMITTED, requester)
    with pytest.raises(ValidationError, match="reason"):
        services.reject_request(request_obj=request_obj, reviewer=reviewer, reason="  ")
    with pytest.raises(ValidationError, match="reason"):
        services.request_changes(request_obj=request_obj, reviewer=reviewer, message="")


def test_researchers_cannot_take_reviewer_actions(requester):
    other = UserFactory()
    request_obj = request_in(S.SUBMITTED, requester)
    with pytest.raises(ValidationError, match="Only reviewers"):
        services.approve_request(request_obj=request_obj, reviewer=other)
    with pytest.raises(ValidationError, match="Only reviewers"):
        services.reject_request(request_obj=request_obj, reviewer=other, reason="no")


def test_reviewers_cannot_decide_their_own_request():
    staff = StaffFactory()
    give_credentials(staff)
    request_obj = request_in(S.SUBMITTED, staff)
    with pytest.raises(ValidationError, match="your own request"):
        services.approve_request(request_obj=request_obj, reviewer=staff)


def test_only_the_requester_submits(requester, reviewer):
    request_obj = request_in(S.DRAFT, requester)
    with pytest.raises(ValidationError, match="Only the requester"):
        services.submit_request(request_obj=request_obj, actor=UserFactory())


def test_submission_needs_the_tier_credentials():
    user = UserFactory()
    request_obj = request_in(S.DRAFT, user)
    with pytest.raises(ValidationError, match="A complete profile"):
        services.submit_request(request_obj=request_obj, actor=user)
    assert AccessRequest.objects.get(pk=request_obj.pk).status == S.DRAFT


def test_approval_needs_physionet_checked(reviewer):
    user = UserFactory()
    give_credentials(user)
    user.physionet_attestations.update(checked_at=None, checked_by=None)
    request_obj = request_in(S.DRAFT, user)
    services.submit_request(request_obj=request_obj, actor=user)  # attested is enough to submit
    with pytest.raises(ValidationError, match="PhysioNet"):
        services.approve_request(request_obj=request_obj, reviewer=reviewer)
    services.verify_physionet(attestation=user.physionet_attestations.get(), reviewer=reviewer)
    assert services.approve_request(request_obj=request_obj, reviewer=reviewer).status == S.APPROVED


def test_one_open_request_per_tier(requester):
    tier = Tier.objects.get(slug="generate")
    services.create_request(user=requester, tier=tier, justification="one")
    with pytest.raises(ValidationError, match="already have an open"):
        services.create_request(user=requester, tier=tier, justification="two")


# --- The two-reviewer rule (Weights) --------------------------------------------------------------


@pytest.fixture
def weights_request(requester):
    return request_in(S.SUBMITTED, requester, slug="weights")


def test_weights_needs_two_different_reviewers(weights_request, reviewer, requester):
    second = StaffFactory(username="rev2")
    first = services.approve_request(request_obj=weights_request, reviewer=reviewer)
    assert first.status == S.SUBMITTED
    assert not AccessGrant.objects.filter(request=weights_request).exists()
    assert not access_policy(requester).can(caps.DOWNLOAD_WEIGHTS)
    assert AuditEvent.objects.filter(action="access_request.approval_recorded").count() == 1
    final = services.approve_request(request_obj=weights_request, reviewer=second)
    assert final.status == S.APPROVED
    assert access_policy(requester).can(caps.DOWNLOAD_WEIGHTS)


def test_the_same_reviewer_cannot_approve_twice(weights_request, reviewer):
    services.approve_request(request_obj=weights_request, reviewer=reviewer)
    with pytest.raises(ValidationError, match="another reviewer"):
        services.approve_request(request_obj=weights_request, reviewer=reviewer)
    weights_request.refresh_from_db()
    assert weights_request.status == S.SUBMITTED


def test_approvals_do_not_carry_over_a_request_for_changes(weights_request, reviewer, requester):
    second = StaffFactory(username="rev2")
    services.approve_request(request_obj=weights_request, reviewer=reviewer)
    services.request_changes(request_obj=weights_request, reviewer=second, message="More detail in the plan.")
    services.submit_request(request_obj=weights_request, actor=requester)
    assert services.approve_request(request_obj=weights_request, reviewer=second).status == S.RESUBMITTED
    assert services.approve_request(request_obj=weights_request, reviewer=reviewer).status == S.APPROVED


def test_weights_submission_needs_a_research_plan(requester):
    requester.profile.research_plan = "short"
    requester.profile.save()
    request_obj = request_in(S.DRAFT, requester, slug="weights")
    with pytest.raises(ValidationError, match="research plan"):
        services.submit_request(request_obj=request_obj, actor=requester)


def test_revocation_ends_the_grant_and_says_why(requester, reviewer):
    request_obj = request_in(S.SUBMITTED, requester)
    services.approve_request(request_obj=request_obj, reviewer=reviewer)
    services.revoke_request(request_obj=request_obj, reviewer=reviewer, reason="Institution withdrew.")
    grant = AccessGrant.objects.get(request=request_obj)
    assert grant.status == "revoked" and grant.revocation_reason == "Institution withdrew."
    assert not access_policy(requester).can(caps.GENERATE)


def test_expire_grants_command_expires_lapsed_grants(requester, reviewer, django_capture_on_commit_callbacks):
    from io import StringIO

    from django.core.management import call_command

    request_obj = request_in(S.SUBMITTED, requester)
    services.approve_request(request_obj=request_obj, reviewer=reviewer)
    AccessGrant.objects.filter(request=request_obj).update(expires_at=timezone.now() - timedelta(minutes=1))
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("expire_grants", stdout=out)
    assert "Expired 1 grant" in out.getvalue()
    request_obj.refresh_from_db()
    assert request_obj.status == S.EXPIRED
    assert "expired" in mail.outbox[-1].subject
