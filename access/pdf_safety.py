"""What an uploaded certificate PDF may not contain (issue 15, item 12).

A CITI completion report is a page or two of text. Reviewers open these files, so a PDF that
can act on its own is refused: JavaScript, automatic actions (/AA, an /OpenAction other than
"go to a page"), launching programs, embedded files; and so is one that is built to exhaust
the reader: too many pages, too many objects, streams that expand to more than
MAX_DECOMPRESSED_BYTES in total, or images with absurd dimensions.

Every object the cross-reference table names is inspected, including those packed inside
compressed object streams, with names already decoded (``/J#53`` is ``/JS``); the raw bytes
are scanned as well, for objects that a damaged table would hide from the walk."""

from __future__ import annotations

import re
import zlib

from django.core.exceptions import ValidationError
from pypdf import PdfReader
from pypdf.errors import LimitReachedError
from pypdf.generic import ArrayObject, DictionaryObject, NameObject, StreamObject

MAX_PAGES = 50
MAX_OBJECTS = 100_000
MAX_DECOMPRESSED_BYTES = 50 * 1024 * 1024
MAX_IMAGE_PIXELS = 100_000_000
_INFLATE_CHUNK = 1024 * 1024

REPRINT = "Upload the report as CITI issued it, or print it to a new PDF first."
MESSAGES = {
    "javascript": "This PDF contains JavaScript, which a certificate never needs. " + REPRINT,
    "auto_action": "This PDF runs actions by itself when it is opened or read. " + REPRINT,
    "launch": "This PDF contains an action that launches a program. " + REPRINT,
    "embedded": "This PDF has other files embedded in it. " + REPRINT,
    "too_large": (
        f"This PDF expands to more than {MAX_DECOMPRESSED_BYTES // (1024 * 1024)} MB when it is opened "
        "(a decompression bomb, or not a certificate). " + REPRINT
    ),
    "pages": f"This PDF has more than {MAX_PAGES} pages; a CITI completion report has one or two.",
    "objects": "This PDF is far more complex than a certificate. " + REPRINT,
    "image": "This PDF contains an image of absurd dimensions. " + REPRINT,
}

_FORBIDDEN_KEYS = {
    "/JS": "javascript",
    "/JavaScript": "javascript",
    "/AA": "auto_action",
    "/Launch": "launch",
    "/EmbeddedFile": "embedded",
    "/EmbeddedFiles": "embedded",
}
_FORBIDDEN_ACTIONS = {"/JavaScript": "javascript", "/Launch": "launch", "/Rendition": "javascript"}
_FORBIDDEN_TYPES = {"/EmbeddedFile": "embedded", "/Filespec": "embedded"}
# A PDF name token: '/' then regular characters (anything but whitespace and delimiters).
_RAW_NAME = re.compile(rb"/([^\x00\t\n\x0c\r ()<>\[\]{}/%]+)")
_HEX_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_RAW_FORBIDDEN = {b"JS", b"JavaScript", b"Launch", b"EmbeddedFile", b"EmbeddedFiles"}


def refuse(reason: str) -> ValidationError:
    return ValidationError(MESSAGES[reason], code=f"pdf_{reason}")


def check_pdf_safety(data: bytes, reader: PdfReader) -> None:
    """Raise ValidationError (with a message for the uploader) if the PDF is not safe to show."""
    _scan_raw_names(data)
    budget = _Budget(MAX_DECOMPRESSED_BYTES)
    for obj in _every_object(reader):
        _check_tree(obj, budget)
    _check_open_action(reader)
    if len(reader.pages) > MAX_PAGES:
        raise refuse("pages")


def _scan_raw_names(data: bytes) -> None:
    for match in _RAW_NAME.finditer(data):
        name = _HEX_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), match.group(1))
        if name in _RAW_FORBIDDEN:
            raise refuse(_FORBIDDEN_KEYS["/" + name.decode("latin-1")])


def _every_object(reader: PdfReader):
    """Each object the cross-reference table names, then those packed in object streams
    (whose containers have then been measured already), and the trailer."""
    direct = sorted({num for table in reader.xref.values() for num in table})
    packed = sorted(set(reader.xref_objStm) - set(direct))
    if len(direct) + len(packed) > MAX_OBJECTS:
        raise refuse("objects")
    yield reader.trailer
    for number in direct + packed:
        try:
            obj = reader.get_object(number)
        except Exception:  # an unreadable object is nothing a viewer can run either
            continue
        if obj is not None:
            yield obj


class _Budget:
    def __init__(self, limit: int):
        self.left = limit

    def spend(self, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise refuse("too_large")


def _check_tree(root, budget: _Budget) -> None:
    """Walk one object's direct contents (indirect references are objects of their own)."""
    pending = [root]
    while pending:
        item = pending.pop()
        if isinstance(item, DictionaryObject):
            _check_dictionary(item)
            if isinstance(item, StreamObject):
                _check_stream(item, budget)
            pending.extend(item.values())
        elif isinstance(item, ArrayObject):
            pending.extend(item)


def _check_dictionary(dictionary: DictionaryObject) -> None:
    for key in dictionary.keys():
        if key in _FORBIDDEN_KEYS:
            raise refuse(_FORBIDDEN_KEYS[key])
    action = dictionary.get("/S")
    if isinstance(action, NameObject) and action in _FORBIDDEN_ACTIONS:
        raise refuse(_FORBIDDEN_ACTIONS[action])
    kind = dictionary.get("/Type")
    if isinstance(kind, NameObject) and kind in _FORBIDDEN_TYPES:
        raise refuse(_FORBIDDEN_TYPES[kind])


def _check_open_action(reader: PdfReader) -> None:
    """An /OpenAction may go to a page (an array, or a /GoTo action); nothing else."""
    try:
        action = reader.trailer["/Root"].get_object().get("/OpenAction")
        action = action.get_object() if action is not None else None
    except Exception:
        return
    if isinstance(action, DictionaryObject) and action.get("/S") != "/GoTo":
        raise refuse("auto_action")


def _filters(stream: StreamObject) -> list[str]:
    value = stream.get("/Filter")
    value = value.get_object() if value is not None else None
    if value is None:
        return []
    return [str(f) for f in value] if isinstance(value, ArrayObject) else [str(value)]


def _check_stream(stream: StreamObject, budget: _Budget) -> None:
    width, height = stream.get("/Width", 0), stream.get("/Height", 0)
    if isinstance(width, int) and isinstance(height, int) and width * height > MAX_IMAGE_PIXELS:
        raise refuse("image")
    raw = stream._data or b""  # the encoded bytes as stored in the file
    filters = _filters(stream)
    if filters[:1] in (["/FlateDecode"], ["/Fl"]):
        _inflate_counting(raw, budget)
    elif any(f in ("/LZWDecode", "/LZW", "/RunLengthDecode", "/RL") for f in filters):
        # pypdf decodes these in memory (capped per stream); count what they expand to.
        try:
            decoded = len(stream.get_data())
        except LimitReachedError:  # over pypdf's own cap for one stream
            decoded = MAX_DECOMPRESSED_BYTES + 1
        except Exception:  # corrupt: expands to nothing a viewer can show
            decoded = len(raw)
        budget.spend(decoded)
    else:
        budget.spend(len(raw))


def _inflate_counting(raw: bytes, budget: _Budget) -> None:
    """Inflate in bounded steps, counting the output and keeping none of it."""
    inflater = zlib.decompressobj()
    pending = raw
    try:
        while True:
            chunk = inflater.decompress(pending, _INFLATE_CHUNK)
            budget.spend(len(chunk))
            pending = inflater.unconsumed_tail
            if not chunk and not pending:
                break
    except zlib.error:
        return  # corrupt data expands to nothing a viewer can show
