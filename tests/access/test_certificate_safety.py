"""Certificate uploads refuse PDFs that can act on their own or exhaust the reader, and
certificates reach reviewers as sandboxed downloads (issue 15, item 12)."""

import io
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfWriter
from pypdf.actions import JavaScript

from access import services
from access.certificates import check_pdf
from access.models import TrainingCertificate
from tests.access import attack_pdfs
from tests.access.factories import login_verified, tiny_pdf
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db


def upload(client, content: bytes):
    today = timezone.localdate()
    return client.post(reverse("access-certificate-upload"), {
        "file": SimpleUploadedFile("citi.pdf", content, "application/pdf"),
        "completed_on": (today - timedelta(days=10)).isoformat(),
        "expires_on": (today + timedelta(days=700)).isoformat(),
    })


def written_by_pypdf(action) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    action(writer)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


REFUSED = [
    ("open_action_javascript", attack_pdfs.open_action_javascript, "JavaScript"),
    ("escaped_names", attack_pdfs.open_action_javascript_with_escaped_names, "JavaScript"),
    ("page_additional_action", attack_pdfs.page_additional_action, "JavaScript"),
    ("page_additional_action_without_script", attack_pdfs.page_additional_action_opening_a_url, "by itself"),
    ("open_action_submitting_a_form", attack_pdfs.open_action_submit_form, "by itself"),
    ("javascript_name_tree", attack_pdfs.document_javascript_name_tree, "JavaScript"),
    ("javascript_in_object_stream", attack_pdfs.javascript_inside_a_compressed_object_stream, "JavaScript"),
    ("launch", attack_pdfs.launch_action, "launches a program"),
    ("launch_on_a_link", attack_pdfs.launch_action_on_a_link, "launches a program"),
    ("embedded_file", attack_pdfs.embedded_file, "files embedded"),
    ("flate_bomb", attack_pdfs.flate_bomb, "more than 50 MB"),
    ("many_small_bombs", attack_pdfs.many_small_bombs, "more than 50 MB"),
    ("many_pages", attack_pdfs.many_pages, "more than 50 pages"),
    ("pypdf_add_js", lambda: written_by_pypdf(lambda w: w.add_open_action(JavaScript("app.alert(1);"))), "JavaScript"),
    ("pypdf_attachment", lambda: written_by_pypdf(lambda w: w.add_attachment("a.txt", b"hello")), "files embedded"),
]


@pytest.mark.parametrize("name, build, message", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_hostile_pdf_is_refused_with_a_clear_message(client, researcher, name, build, message):
    client.force_login(researcher)
    content = build()
    assert len(content) < 1024 * 1024  # small on disk: the size limit is not what stops it
    response = upload(client, content)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not TrainingCertificate.objects.exists()


def test_the_object_stream_attack_is_invisible_in_the_raw_bytes():
    content = attack_pdfs.javascript_inside_a_compressed_object_stream()
    assert b"JavaScript" not in content and b"/JS" not in content
    with pytest.raises(ValidationError):
        check_pdf(content)


def test_a_decompression_bomb_is_refused_quickly_without_inflating_it_into_memory():
    content = attack_pdfs.flate_bomb(megabytes=300)  # 300 MB of zeros, about 300 KB on disk
    started = time.perf_counter()
    with pytest.raises(ValidationError, match="more than 50 MB"):
        check_pdf(content)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("build", [attack_pdfs.plain, attack_pdfs.with_go_to_open_action, tiny_pdf])
def test_ordinary_pdfs_are_still_accepted(client, researcher, build):
    client.force_login(researcher)
    assert check_pdf(build()) == 1
    assert upload(client, build()).status_code == 302
    assert TrainingCertificate.objects.filter(user=researcher).exists()


def test_reviewers_get_the_certificate_as_a_sandboxed_download(client, researcher):
    certificate = services.upload_certificate(
        user=researcher, uploaded_file=SimpleUploadedFile("c.pdf", tiny_pdf()),
        completed_on=timezone.localdate(), expires_on=timezone.localdate() + timedelta(days=5), actor=researcher,
    )
    login_verified(client, StaffFactory())
    response = client.get(reverse("access-certificate-file", args=[certificate.pk]))
    assert response.status_code == 200 and response.content == tiny_pdf()
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    policy = [d.strip() for d in response["Content-Security-Policy"].split(";")]
    assert "sandbox" in policy and "default-src 'none'" in policy
