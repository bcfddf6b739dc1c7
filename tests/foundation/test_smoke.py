import pytest
from django.urls import reverse


@pytest.mark.django_db
def test_home_page_renders(client):
    response = client.get(reverse("home"))
    assert response.status_code == 200
    assert b"Synthetic chest X-rays" in response.content


@pytest.mark.django_db
def test_login_page_renders(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="password"' in response.content


@pytest.mark.django_db
def test_unknown_page_is_a_plain_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert b"There is nothing here, or it is not yours to see." in response.content


def test_server_error_page_renders_when_the_database_is_down():
    from django.db import OperationalError
    from django.test import RequestFactory
    from django.utils.functional import SimpleLazyObject

    from cxr_platform.views import server_error

    def user_from_a_dead_database():
        raise OperationalError("connection refused")

    request = RequestFactory().get("/")
    request.user = SimpleLazyObject(user_from_a_dead_database)
    response = server_error(request)
    assert response.status_code == 500
    assert b"Something went wrong" in response.content
    assert b"Traceback" not in response.content


def test_unexpected_api_errors_become_a_plain_500():
    from cxr_platform.api.exceptions import exception_handler

    response = exception_handler(RuntimeError("secret internals"), {})
    assert response.status_code == 500
    assert response.data == {"detail": "Something went wrong on our side. The error has been logged."}


def test_django_validation_errors_become_a_400_in_the_api():
    from django.core.exceptions import ValidationError

    from cxr_platform.api.exceptions import exception_handler

    response = exception_handler(ValidationError({"count": ["Must be at most 1000."]}), {})
    assert response.status_code == 400
    # The API's one error shape: a readable ``detail`` string, and each field's messages beside it.
    assert response.data == {"detail": "Invalid input. count: Must be at most 1000.", "count": ["Must be at most 1000."]}
