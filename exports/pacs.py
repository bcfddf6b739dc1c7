"""Sending DICOM files to a PACS: DICOM C-STORE (pynetdicom) or DICOMweb STOW-RS (dicomweb-client).

No database here. ``send`` takes a destination's address, its login and the files, and yields one
``Outcome`` per file as soon as the PACS has answered for it, so the caller can save each result
before the next file goes out. A file counts as sent only when the PACS acknowledged it: a C-STORE
success (or warning) status, or its SOP Instance UID among a STOW-RS response's referenced SOPs.
When nothing more can be sent in this run (no connection, association refused, login refused,
connection lost), ``TransferStopped`` says why in words; files without an outcome were not sent.
"""

from __future__ import annotations

import io
import logging
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import pydicom
from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, STORAGE_SERVICE_CLASS_STATUS, code_to_category

logger = logging.getLogger(__name__)

# pynetdicom accepts at most 128 requested presentation contexts per association.
MAX_CONTEXTS = 128


@dataclass(frozen=True)
class Item:
    """One DICOM file to send; ``open`` gives a fresh binary file object each call."""

    sop_instance_uid: str
    open: Callable[[], BinaryIO]


@dataclass(frozen=True)
class Outcome:
    sop_instance_uid: str
    sent: bool
    reason: str = ""


class TransferStopped(Exception):
    """Nothing more can be sent in this run; ``reason`` says why, for a person."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def ae_title_problem(title: str) -> str | None:
    """Why ``title`` is not a valid AE title (PS3.5: at most 16 characters, no backslash or control
    characters, not only spaces), or None."""
    if len(title) > 16:
        return "An AE title has at most 16 characters."
    if not title.strip():
        return "An AE title cannot be empty or only spaces."
    if "\\" in title or any(ord(c) < 32 or ord(c) > 126 for c in title):
        return "An AE title holds only printable ASCII characters and no backslash."
    return None


def status_meaning(code: int) -> str:
    """What a DIMSE status code (C-STORE status, STOW-RS FailureReason) means, in the standard's words."""
    return STORAGE_SERVICE_CLASS_STATUS.get(code, (None, "unknown status"))[1]


def send(destination, items: Sequence[Item], *, login: tuple[str, str] | None = None, timeout: float = 30,
         stow_batch: int = 20) -> Iterator[Outcome]:
    """Send ``items`` to ``destination`` (an exports.models.Destination), yielding each file's outcome."""
    if destination.kind == "dimse":
        return c_store(host=destination.host, port=destination.port, called_ae_title=destination.called_ae_title,
                       calling_ae_title=destination.calling_ae_title, items=items, timeout=timeout)
    return stow_rs(base_url=destination.base_url, login=login, items=items, timeout=timeout, batch=stow_batch)


# --- C-STORE ---------------------------------------------------------------------------------------


def c_store(*, host: str, port: int, called_ae_title: str, calling_ae_title: str, items: Sequence[Item],
            timeout: float) -> Iterator[Outcome]:
    """Every item over one association; one presentation context per (SOP class, transfer syntax)
    the files have, so each file goes in its own encoding (JPEG-LS stays JPEG-LS)."""
    if not items:
        return
    kinds = []
    for item in items:
        with item.open() as handle:  # the file meta only (read_file_meta_info wants a path)
            meta = pydicom.dcmread(handle, stop_before_pixels=True).file_meta
        kinds.append((UID(meta.MediaStorageSOPClassUID), UID(meta.TransferSyntaxUID)))
    contexts = sorted(set(kinds))
    if len(contexts) > MAX_CONTEXTS:
        raise TransferStopped(f"The files need {len(contexts)} presentation contexts; one association allows "
                              f"{MAX_CONTEXTS}.")
    ae = AE(ae_title=calling_ae_title)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    answers, opened = [], []
    handlers = [(evt.EVT_ACSE_RECV, lambda event: answers.append(event.primitive)),
                (evt.EVT_CONN_OPEN, lambda event: opened.append(True))]
    assoc = ae.associate(host, port, ae_title=called_ae_title, evt_handlers=handlers)
    if not assoc.is_established and opened and not answers:  # handlers run on pynetdicom's thread: let them finish
        deadline = time.monotonic() + 2.0
        while not answers and time.monotonic() < deadline:
            time.sleep(0.01)
    if not assoc.is_established:
        raise TransferStopped(_no_association(answers, bool(opened), host=host, port=port, called=called_ae_title,
                                              calling=calling_ae_title, timeout=timeout))
    try:
        accepted = {(UID(cx.abstract_syntax), UID(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
        for item, (sop_class, syntax) in zip(items, kinds):
            if (sop_class, syntax) not in accepted:
                yield Outcome(item.sop_instance_uid, False, f"The PACS does not accept {sop_class.name} "
                                                            f"in {syntax.name} (presentation context refused).")
                continue
            with item.open() as handle:
                dataset = pydicom.dcmread(io.BytesIO(handle.read()))
            status = assoc.send_c_store(dataset)
            if "Status" not in status:  # no C-STORE response: aborted, or no answer within the timeout
                yield Outcome(item.sop_instance_uid, False,
                              f"No C-STORE response from the PACS within {timeout:g} s (association aborted).")
                raise TransferStopped(f"The association with {called_ae_title}@{host}:{port} was lost "
                                      f"(aborted or no answer within {timeout:g} s).")
            yield _c_store_outcome(item.sop_instance_uid, status)
            if not assoc.is_established:
                raise TransferStopped(f"The PACS {called_ae_title}@{host}:{port} closed the association.")
    finally:
        if assoc.is_established:
            assoc.release()


def _c_store_outcome(uid: str, status) -> Outcome:
    code = int(status.Status)
    if code_to_category(code) in (STATUS_SUCCESS, STATUS_WARNING):  # a warning (e.g. coercion) is still stored
        return Outcome(uid, True)
    reason = f"C-STORE failed with status 0x{code:04X} ({status_meaning(code)})"
    comment = status.get("ErrorComment")
    return Outcome(uid, False, f"{reason}: {comment}." if comment else f"{reason}.")


def _no_association(answers, opened: bool, *, host, port, called, calling, timeout) -> str:
    rejection = next((a for a in answers if getattr(a, "result", None) in (1, 2)), None)
    where = f"{host}:{port}"
    if rejection is not None:
        text = (f"The PACS at {where} refused the association ({rejection.result_str.lower()}, by the "
                f"{rejection.source_str}): {rejection.reason_str}.")
        if rejection.result_source == 1 and rejection.diagnostic == 7:
            text += f" Check the called AE title “{called}”."
        elif rejection.result_source == 1 and rejection.diagnostic == 3:
            text += f" The PACS does not know our AE title “{calling}”: ask its administrator to register it."
        return text
    if opened:
        return (f"The PACS at {where} closed the connection without accepting the association "
                f"(A-ABORT, or no answer within {timeout:g} s).")
    return _connection_problem(host, port, timeout)


def _connection_problem(host: str, port: int, timeout: float) -> str:
    """Why no TCP connection opened (pynetdicom only logs it): ask the network once more."""
    where = f"{host}:{port}"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError:
        return f"Connection refused by {where}: nothing listens on that port (is the PACS running, is the port right?)."
    except socket.timeout:
        return f"Connection to {where} timed out after {timeout:g} s (wrong host, or a firewall drops it)."
    except socket.gaierror:
        return f"The host name “{host}” could not be resolved."
    except OSError as error:
        return f"Could not connect to {where}: {error.strerror or error}."
    return f"Could not connect to {where} (it accepts connections now: retry)."


# --- STOW-RS ---------------------------------------------------------------------------------------


def stow_rs(*, base_url: str, login: tuple[str, str] | None, items: Sequence[Item], timeout: float,
            batch: int) -> Iterator[Outcome]:
    """Items in requests of ``batch`` files to ``<base_url>/studies``; each file's outcome read from the
    Store Instances Response (referenced vs failed SOPs)."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    if login:
        session.auth = login
    client = DICOMwebClient(url=base_url.rstrip("/"), session=session, timeout=timeout)
    # No retries inside the client: a request over 1 MB is streamed from a generator that a retry would
    # resend empty. A failed instance is retried by retrying the delivery.
    client.set_http_retry_params(retry=False)
    url = base_url.rstrip("/") + "/studies"
    for start in range(0, len(items), max(1, batch)):
        chunk = items[start:start + max(1, batch)]
        datasets = []
        for item in chunk:
            with item.open() as handle:
                datasets.append(pydicom.dcmread(io.BytesIO(handle.read())))
        try:
            answer = client.store_instances(datasets)
        except requests.HTTPError as error:
            answer = _store_response(error.response)
            if answer is None:  # no per-instance answer: the whole request was refused
                raise TransferStopped(_http_problem(error.response, url)) from None
        except requests.Timeout:
            raise TransferStopped(f"No answer from {url} within {timeout:g} s.") from None
        except requests.ConnectionError as error:
            raise TransferStopped(f"Could not connect to {url}: {_root_cause(error)}.") from None
        yield from _stow_outcomes(chunk, answer)


def _stow_outcomes(chunk: Iterable[Item], answer) -> Iterator[Outcome]:
    stored = {str(entry.get("ReferencedSOPInstanceUID", "")) for entry in answer.get("ReferencedSOPSequence", [])}
    failed = {str(entry.get("ReferencedSOPInstanceUID", "")): entry.get("FailureReason")
              for entry in answer.get("FailedSOPSequence", [])}
    for item in chunk:
        uid = item.sop_instance_uid
        if uid in failed:
            code = failed[uid]
            why = f"0x{int(code):04X} ({status_meaning(int(code))})" if code is not None else "no reason given"
            yield Outcome(uid, False, f"STOW-RS refused this instance: failure reason {why}.")
        elif uid in stored:
            yield Outcome(uid, True)
        else:
            yield Outcome(uid, False, "The PACS did not acknowledge this instance in its STOW-RS response.")


def _store_response(response):
    """The Store Instances Response a refusing STOW-RS answer may carry (e.g. 409 with Failed SOPs)."""
    if response is None or "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        answer = pydicom.Dataset.from_json(response.json())
    except Exception:  # noqa: BLE001 - not a DICOM JSON body: no per-instance answer
        return None
    return answer if ("FailedSOPSequence" in answer or "ReferencedSOPSequence" in answer) else None


def _http_problem(response, url: str) -> str:
    code = response.status_code
    if code == 401:
        return (f"HTTP 401 Unauthorized from {url}: authentication failed. Check the destination's username "
                "and password.")
    if code == 403:
        return f"HTTP 403 Forbidden from {url}: this login may not store instances there."
    if code == 404:
        return f"HTTP 404 Not Found: no STOW-RS service at {url}. Check the DICOMweb base URL."
    if code == 413:
        return f"HTTP 413 Payload Too Large from {url}: the PACS refuses requests this large."
    text = response.text.strip()[:200] if "text" in response.headers.get("Content-Type", "") else ""
    return f"HTTP {code} {response.reason} from {url}" + (f": {text}" if text else ".")


def _root_cause(error: Exception) -> str:
    """The innermost reason of a requests connection error ("[Errno 111] Connection refused")."""
    text = str(error)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "timed out"):
        if marker in text:
            return marker.lower() if marker != "Connection refused" else "connection refused"
    return text[:200]
