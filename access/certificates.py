"""Training certificates: what counts as a PDF, and reading one back."""

from __future__ import annotations

import io
import logging

from django.core.exceptions import ValidationError
from pypdf import PdfReader

from . import encryption
from .pdf_safety import check_pdf_safety

MAX_CERTIFICATE_BYTES = 10 * 1024 * 1024
PDF_MAGIC = b"%PDF-"

logger = logging.getLogger(__name__)


def read_upload(uploaded_file) -> bytes:
    """The uploaded bytes, refusing anything over the limit without reading it all."""
    if uploaded_file.size is not None and uploaded_file.size > MAX_CERTIFICATE_BYTES:
        raise ValidationError("The certificate is larger than 10 MB. Upload the PDF report itself, at most 10 MB.")
    uploaded_file.seek(0)
    data = uploaded_file.read(MAX_CERTIFICATE_BYTES + 1)
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise ValidationError("The certificate is larger than 10 MB. Upload the PDF report itself, at most 10 MB.")
    return data


def check_pdf(data: bytes) -> int:
    """Raise ValidationError unless ``data`` is a readable, unencrypted PDF; return its page count.

    Judged by content only: the file name and the browser's content type are the user's words."""
    if not data:
        raise ValidationError("The file is empty.")
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise ValidationError("The certificate is larger than 10 MB.")
    if not data.startswith(PDF_MAGIC):
        raise ValidationError("This file is not a PDF (whatever its name says). Upload the CITI completion report as a PDF.")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise ValidationError("The PDF is password-protected. Upload the report without a password.")
        check_pdf_safety(data, reader)  # before anything renders it: scripts, embedded files, bombs
        pages = len(reader.pages)
        # Touch the first page's content too: a header on garbage parses as far as the page tree.
        reader.pages[0].extract_text() if pages else None
    except ValidationError:
        raise
    except Exception as exc:  # pypdf raises many kinds of errors on malformed input
        logger.info("Refused an unreadable PDF upload: %s", exc)
        raise ValidationError("This file starts like a PDF but cannot be read as one. Upload the original report.") from exc
    if pages < 1:
        raise ValidationError("The PDF has no pages.")
    return pages


def read_certificate(certificate) -> bytes:
    """The decrypted PDF of a stored certificate."""
    with certificate.file.open("rb") as handle:
        return encryption.decrypt(handle.read())


def download_response(certificate, data: bytes):
    """The one way a certificate leaves the platform, for the review pages and the reviewer API alike: a
    download, never rendered in our origin; and if a browser renders it anyway, sandboxed (no scripts,
    no same-origin access)."""
    from django.http import HttpResponse

    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="citi-certificate-{certificate.pk}.pdf"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["Cache-Control"] = "private, no-store"
    return response
