"""cxr_platform.downloads: signed links and Range responses, on a real file in real storage."""

import os

import pytest
from django.core.files.storage import FileSystemStorage
from django.test import RequestFactory

from cxr_platform import downloads
from tests.factories import UserFactory

SIZE = 10_000


@pytest.fixture
def stored(tmp_path):
    data = os.urandom(SIZE)
    (tmp_path / "blob.bin").write_bytes(data)
    return FileSystemStorage(location=tmp_path), data


def get(stored, range_header=None, method="get", **kwargs):
    storage, _ = stored
    headers = {"HTTP_RANGE": range_header} if range_header else {}
    headers.update(kwargs.pop("headers", {}))
    request = getattr(RequestFactory(), method)("/x", **headers)
    return downloads.file_response(request, storage=storage, name="blob.bin", **kwargs)


def body(response):
    return b"".join(response.streaming_content) if response.streaming else response.content


# --- links -------------------------------------------------------------------------------------


@pytest.fixture
def alice(db):
    return UserFactory()


def test_link_verifies_for_its_user_object_and_path(alice):
    link = downloads.sign_link(purpose="weights", user=alice, object_id=7, path="unet/w.bin")
    claim = downloads.verify_link(link.token, purpose="weights", user=alice, object_id=7, path="unet/w.bin")
    assert (claim.user_id, claim.object_id, claim.path) == (alice.pk, "7", "unet/w.bin")


def test_link_of_another_user_is_refused(alice):
    link = downloads.sign_link(purpose="weights", user=alice, object_id=7, path="a")
    with pytest.raises(downloads.WrongUser):
        downloads.verify_link(link.token, purpose="weights", user=UserFactory())


def test_expired_link_is_refused(alice):
    link = downloads.sign_link(purpose="weights", user=alice, object_id=7, path="a", ttl_seconds=0)
    with pytest.raises(downloads.ExpiredLink):
        downloads.verify_link(link.token, purpose="weights", user=alice)


def test_link_for_another_purpose_is_refused(alice):
    link = downloads.sign_link(purpose="exports", user=alice, object_id=7, path="a")
    with pytest.raises(downloads.InvalidLink):
        downloads.verify_link(link.token, purpose="weights", user=alice)


def test_link_bound_to_another_path_is_refused(alice):
    link = downloads.sign_link(purpose="weights", user=alice, object_id=7, path="a")
    with pytest.raises(downloads.InvalidLink):
        downloads.verify_link(link.token, purpose="weights", user=alice, path="b")


def test_tampered_link_is_refused(alice):
    link = downloads.sign_link(purpose="weights", user=alice, object_id=7, path="a")
    with pytest.raises(downloads.InvalidLink):
        downloads.verify_link(link.token[:-1] + ("A" if link.token[-1] != "A" else "B"), purpose="weights", user=alice)


# --- ranges ------------------------------------------------------------------------------------


def test_whole_file_streams_with_accept_ranges(stored):
    response = get(stored)
    assert response.status_code == 200 and response.streaming
    assert response["Accept-Ranges"] == "bytes" and response["Content-Length"] == str(SIZE)
    assert body(response) == stored[1]


def test_first_bytes(stored):
    response = get(stored, "bytes=0-99")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 0-99/{SIZE}" and response["Content-Length"] == "100"
    assert body(response) == stored[1][:100]


def test_middle_range(stored):
    response = get(stored, "bytes=4000-5999")
    assert response.status_code == 206 and response["Content-Range"] == f"bytes 4000-5999/{SIZE}"
    assert body(response) == stored[1][4000:6000]


def test_suffix_range(stored):
    response = get(stored, "bytes=-500")
    assert response.status_code == 206 and response["Content-Range"] == f"bytes {SIZE - 500}-{SIZE - 1}/{SIZE}"
    assert body(response) == stored[1][-500:]


def test_open_ended_range_resumes_to_the_end(stored):
    response = get(stored, "bytes=9000-")
    assert response.status_code == 206 and response["Content-Length"] == "1000"
    assert body(response) == stored[1][9000:]


def test_range_past_the_end_is_clipped(stored):
    response = get(stored, "bytes=9990-20000")
    assert response.status_code == 206 and response["Content-Range"] == f"bytes 9990-9999/{SIZE}"
    assert body(response) == stored[1][9990:]


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", "bytes=500-100", "bytes=abc-def", "bytes=-0", "bytes=5", "bytes=-"])
def test_unsatisfiable_or_invalid_range_is_416(stored, header):
    response = get(stored, header)
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{SIZE}"


def test_multiple_ranges_get_the_whole_file(stored):
    response = get(stored, "bytes=0-1,5-6")
    assert response.status_code == 200 and body(response) == stored[1]


def test_if_range_with_a_stale_etag_sends_the_whole_file(stored):
    response = get(stored, "bytes=0-9", etag='"new"', headers={"HTTP_IF_RANGE": '"old"'})
    assert response.status_code == 200 and len(body(response)) == SIZE


def test_if_range_with_the_current_etag_honours_the_range(stored):
    response = get(stored, "bytes=0-9", etag='"v1"', headers={"HTTP_IF_RANGE": '"v1"'})
    assert response.status_code == 206 and body(response) == stored[1][:10]


def test_head_sends_headers_only_and_does_not_count_as_a_start(stored):
    started = []
    response = get(stored, "bytes=0-9", method="head", on_start=lambda a, b: started.append((a, b)))
    assert response.status_code == 206 and response["Content-Length"] == "10" and response.content == b""
    assert started == []


def test_on_start_reports_the_bytes_about_to_be_sent(stored):
    started = []
    get(stored, "bytes=100-199", on_start=lambda a, b: started.append((a, b)))
    get(stored, on_start=lambda a, b: started.append((a, b)))
    assert started == [(100, 199), (0, SIZE - 1)]


def test_nginx_offload_hands_over_with_x_accel_redirect(stored, settings):
    settings.DOWNLOAD_OFFLOAD = "nginx"
    settings.DOWNLOAD_OFFLOAD_PREFIX = "/protected/"
    response = get(stored, "bytes=0-9")
    assert response["X-Accel-Redirect"] == "/protected/blob.bin"
    assert response.content == b""


def test_apache_offload_hands_over_with_x_sendfile(stored, settings):
    settings.DOWNLOAD_OFFLOAD = "apache"
    response = get(stored)
    assert response["X-Sendfile"] == stored[0].path("blob.bin")
    assert response.content == b""


def test_offload_can_be_declined_per_response(stored, settings):
    settings.DOWNLOAD_OFFLOAD = "nginx"
    response = get(stored, offload=False)
    assert "X-Accel-Redirect" not in response and body(response) == stored[1]
