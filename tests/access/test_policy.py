"""The access policy: capabilities come only from current grants whose credentials are still valid."""

from datetime import timedelta

import pytest
from django.utils import timezone

from access import capabilities as caps
from access import services
from access.credentials import current_credentials
from access.models import AccessGrant, Agreement, Tier
from access.policy import AccessDenied, access_policy, require_capability
from tests.access.factories import give_credentials, grant_tier
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_the_three_tiers_are_seeded_with_the_issue_defaults():
    tiers = {t.slug: t for t in Tier.objects.all()}
    assert tiers["generate"].quotas == {caps.DAILY_IMAGES: 500}
    assert tiers["export"].quotas == {caps.DAILY_IMAGES: 20000}
    assert set(tiers["export"].capabilities) == {caps.GENERATE, caps.EXPORT_DICOM, caps.API}
    weights = tiers["weights"]
    assert weights.capabilities == [caps.DOWNLOAD_WEIGHTS]
    assert set(weights.credentials_needed) == set(caps.CREDENTIALS)
    assert weights.approvals_required == 2
    assert Agreement.objects.filter(is_active=True).count() == 2


def test_give_credentials_creates_real_records_that_count():
    user = UserFactory(email_verified=False)
    give_credentials(user)
    assert all(current_credentials(user).values())
    assert user.training_certificates.count() == 1
    assert user.physionet_attestations.get().checked_at is not None
    assert user.signatures.count() == 2


@pytest.mark.parametrize("slug,capability", [("generate", caps.GENERATE), ("export", caps.API), ("weights", caps.DOWNLOAD_WEIGHTS)])
def test_grant_tier_gives_a_working_grant_of_each_seeded_tier(slug, capability):
    user = UserFactory()
    grant_tier(user, slug)
    policy = access_policy(user)
    assert policy.can(capability)
    require_capability(user, capability)


def test_quotas_take_the_largest_of_the_held_tiers():
    user = UserFactory()
    grant_tier(user, "generate")
    assert access_policy(user).daily_image_quota == 500
    grant_tier(user, "export")
    assert access_policy(user).daily_image_quota == 20000


def test_no_grant_means_no_capability_and_a_clear_message():
    user = UserFactory()
    give_credentials(user)
    with pytest.raises(AccessDenied, match="approved, current access grant"):
        require_capability(user, caps.GENERATE)


def test_anonymous_users_have_nothing():
    from django.contrib.auth.models import AnonymousUser

    assert access_policy(AnonymousUser()).capabilities == frozenset()


def test_revoked_grant_stops_working_on_the_next_request():
    user, reviewer = UserFactory(), StaffFactory()
    grant = grant_tier(user, "generate")
    services.revoke_grant(grant=grant, reviewer=reviewer, reason="Left the project.")
    assert not access_policy(user).can(caps.GENERATE)


def test_lapsed_grant_expires_and_is_audited():
    from cxr_platform.audit.models import AuditEvent

    user = UserFactory()
    grant = grant_tier(user, "generate")
    AccessGrant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert not access_policy(user).can(caps.GENERATE)
    grant.refresh_from_db()
    assert grant.status == AccessGrant.Status.EXPIRED
    assert AuditEvent.objects.filter(action="grant.expired", target_id=str(grant.pk)).exists()


def test_expired_training_certificate_suspends_the_grant():
    user = UserFactory()
    grant_tier(user, "generate")
    user.training_certificates.update(expires_on=timezone.localdate())
    policy = access_policy(user)
    assert not policy.can(caps.GENERATE)
    assert policy.missing_for(Tier.objects.get(slug="generate")) == [caps.CREDENTIALS[caps.TRAINING]]


def test_new_agreement_version_requires_signing_again():
    user, admin = UserFactory(), StaffFactory(is_superuser=True)
    grant_tier(user, "generate")
    agreement = Agreement.objects.get(slug="platform-terms")
    services.publish_agreement_version(agreement=agreement, text=agreement.current_version.text + "\n5. New clause.\n", actor=admin)
    assert not access_policy(user).can(caps.GENERATE)
    version = agreement.current_version
    services.sign_agreement(user=user, version=version, typed_name=user.profile.full_name, shown_sha256=version.sha256)
    assert access_policy(user).can(caps.GENERATE)


def test_missing_for_lists_plain_words_for_each_lacking_credential():
    user = UserFactory(email_verified=False)
    missing = access_policy(user).missing_for(Tier.objects.get(slug="weights"))
    assert missing == [caps.CREDENTIALS[name] for name in (caps.PROFILE, caps.PHYSIONET, caps.TRAINING, caps.AGREEMENTS, caps.RESEARCH_PLAN)]
    give_credentials(user)
    assert access_policy(user).missing_for(Tier.objects.get(slug="weights")) == []


def test_unchecked_physionet_attestation_does_not_count():
    user = UserFactory()
    give_credentials(user)
    services.attest_physionet(user=user, physionet_username="someone_else", actor=user)
    assert current_credentials(user)[caps.PHYSIONET] is False


def test_inactive_tier_gives_nothing():
    user = UserFactory()
    grant = grant_tier(user, "generate")
    Tier.objects.filter(pk=grant.tier_id).update(is_active=False)
    assert not access_policy(user).can(caps.GENERATE)


def _credentials_one_check_at_a_time(user) -> dict:
    """The same answers from the separate checks the dashboard and reviewers use."""
    from access import credentials as c

    profile = c.profile_of(user)
    return {
        caps.PROFILE: bool(profile and profile.is_complete and user.email_verified),
        caps.PHYSIONET: c.physionet_checked(user, profile),
        caps.TRAINING: c.valid_certificate(user) is not None,
        caps.AGREEMENTS: not c.agreements_to_sign(user),
        caps.RESEARCH_PLAN: c.has_research_plan(profile),
    }


@pytest.mark.parametrize("state", [
    "nothing", "complete", "no_profile", "unverified_email", "other_physionet_name", "attestation_unchecked",
    "certificate_unverified", "certificate_expired", "older_agreement_signed", "unpublished_version_only",
    "inactive_agreement_unsigned",
])
def test_the_one_query_credentials_agree_with_the_separate_checks(state):
    from tests.access.factories import give_attestation, give_certificate

    user, admin = UserFactory(), StaffFactory(is_superuser=True)
    if state != "nothing":
        give_credentials(user)
    terms = Agreement.objects.get(slug="platform-terms")
    if state == "no_profile":
        user.profile.delete()
    elif state == "unverified_email":
        user.email_verified = False
        user.save()
    elif state == "other_physionet_name":
        services.attest_physionet(user=user, physionet_username="someone_else", actor=user)
    elif state == "attestation_unchecked":
        give_attestation(user, checked=False)
    elif state == "certificate_unverified":
        user.training_certificates.all().delete()
        give_certificate(user, verified=False)
    elif state == "certificate_expired":
        user.training_certificates.all().delete()
        today = timezone.localdate()
        give_certificate(user, completed_on=today - timedelta(days=800), expires_on=today - timedelta(days=1))
    elif state == "older_agreement_signed":
        services.publish_agreement_version(agreement=terms, text=terms.current_version.text + "\n9. More.\n", actor=admin)
    elif state == "unpublished_version_only":
        terms.versions.create(number=terms.current_version.number + 1, text="draft", sha256="0" * 64)
    elif state == "inactive_agreement_unsigned":
        services.publish_agreement_version(agreement=terms, text=terms.current_version.text + "\n9. More.\n", actor=admin)
        Agreement.objects.filter(pk=terms.pk).update(is_active=False)
    user.refresh_from_db()
    assert current_credentials(user) == _credentials_one_check_at_a_time(user)


def test_the_policy_costs_two_queries_and_one_more_for_model_version_coverage(django_assert_num_queries):
    user = UserFactory()
    for slug in ("generate", "export", "weights"):
        grant_tier(user, slug)
    with django_assert_num_queries(1):  # the credentials and the grants with their tiers, together
        policy = access_policy(user)
        assert policy.can(caps.API) and policy.can(caps.GENERATE)
    from registry.models import ModelVersion

    version = ModelVersion.objects.create(name="m", version="1", directory="/nonexistent")
    with django_assert_num_queries(0):  # no held tier lists model versions: all are covered
        assert policy.can(caps.GENERATE, version)
        assert policy.can(caps.EXPORT_DICOM, version)


def test_a_tier_that_lists_model_versions_covers_only_those_and_is_read_once(django_assert_num_queries):
    from registry.models import ModelVersion

    listed = ModelVersion.objects.create(name="m", version="1", directory="/nonexistent")
    other = ModelVersion.objects.create(name="m", version="2", directory="/nonexistent")
    user = UserFactory()
    grant_tier(user, "generate", model_versions=[listed])
    policy = access_policy(user)
    with django_assert_num_queries(1):
        assert policy.can(caps.GENERATE, listed)
        assert not policy.can(caps.GENERATE, other)
    assert policy.can(caps.GENERATE)  # no model version named: the grant itself
    assert list(policy.model_version_filter(caps.GENERATE)) == [listed]
