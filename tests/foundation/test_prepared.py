"""PreparedQuery: compiled once, then run with new parameters, it answers what the ORM answers."""

from datetime import date, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count
from django.utils import timezone

from access.models import TrainingCertificate
from cxr_platform import prepared
from cxr_platform.prepared import PreparedQuery, field_names, instance
from tests.access.factories import give_certificate
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

User = UserFactory._meta.model


def _certificates(user_pk, valid_on, named):
    return (TrainingCertificate.objects.filter(user=user_pk, expires_on__gt=valid_on, original_name=named)
            .order_by("pk").values("pk", "expires_on", "uploaded_at", "verified_at"))


CERTIFICATES = PreparedQuery(_certificates, user_pk=int, valid_on=date, named=str)


def test_each_call_substitutes_its_own_parameters_and_matches_the_orm():
    alice, bob = UserFactory(), UserFactory()
    today = timezone.localdate()
    for user in (alice, bob):
        give_certificate(user, completed_on=today - timedelta(days=30), expires_on=today + timedelta(days=10))
        give_certificate(user, completed_on=today - timedelta(days=30), expires_on=today + timedelta(days=400))
    name = TrainingCertificate.objects.filter(user=alice).first().original_name
    for user in (alice, bob):
        for valid_on in (today, today + timedelta(days=100), today + timedelta(days=1000)):
            expected = list(_certificates(user.pk, valid_on, name))
            assert CERTIFICATES.rows(user_pk=user.pk, valid_on=valid_on, named=name) == expected
    assert len(CERTIFICATES.rows(user_pk=alice.pk, valid_on=today, named=name)) == 2
    assert CERTIFICATES.rows(user_pk=alice.pk, valid_on=today, named="another name.pdf") == []


def test_rows_carry_python_values_not_database_text():
    user = UserFactory()
    give_certificate(user)
    (row,) = CERTIFICATES.rows(user_pk=user.pk, valid_on=date(2000, 1, 1),
                               named=TrainingCertificate.objects.get(user=user).original_name)
    assert isinstance(row["expires_on"], date)
    assert row["uploaded_at"].tzinfo is not None


def test_instances_built_from_rows_are_the_rows_the_orm_loads():
    user = UserFactory(first_name="Ada")
    query = PreparedQuery(lambda pk: User.objects.filter(pk=pk).values(*field_names(User)), pk=int)
    loaded = instance(User, query.rows(pk=user.pk)[0])
    assert loaded == user and loaded.first_name == "Ada" and loaded._state.adding is False
    partial = instance(User, PreparedQuery(
        lambda pk: User.objects.filter(pk=pk).values(*field_names(User, only=("id", "username"))), pk=int
    ).rows(pk=user.pk)[0], only=("id", "username"))
    assert partial.get_deferred_fields() and partial.first_name == "Ada"  # the rest loads on access


def test_an_instance_has_the_attributes_and_state_the_orm_gives_it():
    user = UserFactory(first_name="Ada")
    row = PreparedQuery(lambda pk: User.objects.filter(pk=pk).values(*field_names(User)), pk=int).rows(pk=user.pk)[0]
    built, loaded = instance(User, row), User.objects.get(pk=user.pk)
    names = [field.attname for field in User._meta.concrete_fields]
    assert {n: getattr(built, n) for n in names} == {n: getattr(loaded, n) for n in names}
    assert (built._state.adding, built._state.db) == (loaded._state.adding, loaded._state.db)
    assert built.get_deferred_fields() == set()
    built.first_name = "Grace"
    built.save(update_fields=["first_name"])
    assert User.objects.get(pk=user.pk).first_name == "Grace"


def test_init_signal_receivers_still_see_every_instance():
    from django.db.models.signals import post_init

    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.pk)

    user = UserFactory()
    post_init.connect(receiver, sender=User)
    try:
        row = PreparedQuery(lambda pk: User.objects.filter(pk=pk).values(*field_names(User)), pk=int).rows(pk=user.pk)[0]
        assert instance(User, row).pk == user.pk
    finally:
        post_init.disconnect(receiver, sender=User)
    assert seen == [user.pk]


def test_a_parameter_the_sql_never_uses_is_refused():
    query = PreparedQuery(lambda pk, unused: User.objects.filter(pk=pk).values("pk"), pk=int, unused=int)
    with pytest.raises(ImproperlyConfigured, match="unused"):
        query.rows(pk=1, unused=2)


def test_shapes_compile_separately_and_only_the_latest_are_kept(monkeypatch):
    monkeypatch.setattr(prepared, "MAX_SHAPES", 4)
    users = sorted(UserFactory.create_batch(6), key=lambda u: u.pk)
    query = PreparedQuery(
        lambda first, offset, limit: User.objects.filter(pk__gte=first).order_by("pk").values("pk")[offset:offset + limit],
        shape=("offset", "limit"), first=int,
    )
    for offset in range(6):
        assert query.rows(first=users[0].pk, offset=offset, limit=2) == [{"pk": u.pk} for u in users[offset:offset + 2]]
    assert len(query._compiled) <= 4


def test_a_changed_key_compiles_again():
    UserFactory(is_staff=True)
    UserFactory(is_staff=False)
    flag = {"staff": True}
    query = PreparedQuery(
        lambda floor: User.objects.filter(pk__gte=floor, is_staff=flag["staff"]).values("is_staff").annotate(n=Count("pk")),
        key=lambda: (flag["staff"],), floor=int,
    )
    assert [row["is_staff"] for row in query.rows(floor=0)] == [True]
    flag["staff"] = False
    assert [row["is_staff"] for row in query.rows(floor=0)] == [False]


@pytest.mark.postgres
def test_on_postgresql_the_statement_is_prepared_on_the_server_once_and_still_counted(django_assert_num_queries):
    from django.db import connection

    user = UserFactory()
    query = PreparedQuery(lambda pk: User.objects.filter(pk=pk).values("pk", "username"), pk=int)
    with django_assert_num_queries(2):  # logged like Django's own queries
        assert query.rows(pk=user.pk) == [{"pk": user.pk, "username": user.username}]
        assert query.rows(pk=user.pk + 1) == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        statements = [row[0] for row in cursor.fetchall()]
    assert sum('"username"' in s and "access_user" in s for s in statements) == 1
    assert connection.connection.prepare_threshold is None  # Django's own queries are never prepared


@pytest.mark.postgres
def test_a_prepared_statement_survives_a_rolled_back_transaction(settings):
    from django.db import transaction

    user = UserFactory()
    query = PreparedQuery(lambda pk: User.objects.filter(pk=pk).values("username"), pk=int)
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            assert query.rows(pk=user.pk)
            raise RuntimeError("roll back")
    assert query.rows(pk=user.pk) == [{"username": user.username}]
    settings.DB_PREPARED_STATEMENTS = False  # behind a transaction-mode pooler: plain statements
    assert query.rows(pk=user.pk) == [{"username": user.username}]
