import shutil

import pytest

from tests.access.factories import grant_tier
from tests.factories import UserFactory

from .factories import array_pngs, make_cohort, real_xray_pngs


def require_tool(name: str) -> str:
    """The path of a system tool the proof tests need (installed by scripts/install_system_deps.sh)."""
    import os

    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing: run scripts/install_system_deps.sh")
        pytest.skip(f"{name} is missing: run scripts/install_system_deps.sh")
    return path


@pytest.fixture(autouse=True)
def _serial_encoder(settings):
    """Encode in the calling thread unless a test asks for encoder threads."""
    settings.EXPORT_WORKERS = 1


@pytest.fixture
def exporter(db, demo_model_version):
    user = UserFactory()
    grant_tier(user, "export")
    return user


@pytest.fixture
def xray_cohort(exporter, demo_model_version, cxr_public_dir):
    """4 passed images from the shared real X-rays (64 px) and 1 flagged one."""
    return make_cohort(exporter, demo_model_version, pngs=real_xray_pngs(cxr_public_dir, 4), flagged=1)


@pytest.fixture
def small_cohort(exporter, demo_model_version):
    return make_cohort(exporter, demo_model_version, pngs=array_pngs(3, size=32))


@pytest.fixture
def eager_celery():
    from cxr_platform.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = previous


# --- A real Orthanc PACS on loopback (test_orthanc.py, test_delivery.py) --------------------------------

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"  # Debian package orthanc-dicomweb


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OrthancServer:
    """One Orthanc process: ``base`` (REST, and DICOMweb under ``base``/dicom-web), ``dicom_port``,
    ``aet``; ``users`` holds the HTTP basic-auth accounts when authentication is on."""

    def __init__(self, process, base: str, dicom_port: int, aet: str, users: dict, log_path):
        self.process, self.base, self.dicom_port, self.aet, self.users, self.log_path = (
            process, base, dicom_port, aet, users, log_path)

    @property
    def dicomweb(self) -> str:
        return self.base + "/dicom-web"

    def request(self, path: str, *, method: str = "GET", body=None):
        import base64
        import json
        import urllib.request

        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        if self.users:
            user, password = next(iter(self.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        import subprocess

        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_orthanc(directory, *, dicomweb: bool = False, users: dict | None = None, **config) -> OrthancServer:
    """Start Orthanc with its own storage in ``directory``; ``config`` overrides its settings
    (e.g. ``DicomCheckCalledAet=True``). ``dicomweb`` loads the DICOMweb plugin; ``users``
    turns on HTTP basic authentication with these accounts."""
    import json
    import os
    import subprocess
    import time
    import urllib.error
    import urllib.request
    from pathlib import Path

    binary = require_tool("Orthanc")
    plugins = []
    if dicomweb:
        if not Path(DICOMWEB_PLUGIN).exists():
            message = f"{DICOMWEB_PLUGIN} is missing: run scripts/install_system_deps.sh (orthanc-dicomweb)"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        plugins.append(DICOMWEB_PLUGIN)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    settings = {
        "Name": "cxr-exports-test", "StorageDirectory": str(directory / "db"), "IndexDirectory": str(directory / "db"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
        "AuthenticationEnabled": bool(users), "RegisteredUsers": users or {}, "DicomCheckCalledAet": False,
        "Plugins": plugins, "StorageCompression": False, "ConcurrentJobs": 1,
        "DicomWeb": {"Enable": dicomweb, "Root": "/dicom-web/"},
        **config,
    }
    (directory / "orthanc.json").write_text(json.dumps(settings))
    log_path = directory / "orthanc.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([binary, str(directory / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    server = OrthancServer(process, f"http://127.0.0.1:{http_port}", dicom_port, settings["DicomAet"], users or {},
                           log_path)
    deadline = time.monotonic() + 60
    while True:
        try:
            server.request("/system")
            return server
        except urllib.error.HTTPError:
            return server  # it answers (e.g. 401 for a wrong account): it is up
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                pytest.fail("Orthanc did not start:\n" + log_path.read_text(errors="replace")[-2000:])
            time.sleep(0.3)


@pytest.fixture
def orthanc_factory(tmp_path):
    """Start as many Orthancs as a test needs (``orthanc_factory(**config)``); all stop at teardown."""
    started = []

    def start(**config) -> OrthancServer:
        server = start_orthanc(tmp_path / f"orthanc-{len(started)}", **config)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def orthanc(orthanc_factory):
    """A plain Orthanc (C-STORE and REST, no authentication): (REST base URL, DICOM port)."""
    server = orthanc_factory()
    return server.base, server.dicom_port


# --- Push to a PACS: a ready export, destinations, a scriptable C-STORE SCP ---------------------------


@pytest.fixture
def ready_export(exporter, xray_cohort):
    """The 4-image X-ray cohort's export, built into storage (status ready)."""
    from exports import services

    export = services.request_export(user=exporter, cohort=xray_cohort, enqueue=False)
    assert services.build_export(export.pk) == "ready"
    export.refresh_from_db()
    return export


def make_destination(*, users=(), password: str | None = None, **fields):
    """A destination saved through the service (password encrypted), open to ``users``."""
    from exports import delivery
    from exports.models import Destination

    fields.setdefault("name", f"PACS {Destination.objects.count() + 1}")
    destination = delivery.save_destination(Destination(**fields), password=password)
    destination.allowed_users.add(*users)
    return destination


class RecordingSCP:
    """A C-STORE SCP (pynetdicom) that records what it receives; with ``refuse_every_second`` it
    answers 0xA700 (Refused: Out of Resources) to every second instance, as a full PACS would."""

    def __init__(self, port: int, ae_title: str = "TESTSCP"):
        import threading

        from pynetdicom import AE, StoragePresentationContexts, evt

        self.port, self.ae_title = port, ae_title
        self.received: list[str] = []  # SOP Instance UIDs, in arrival order, refused ones too
        self.stored: list[str] = []
        self.refuse_every_second = False
        self._lock = threading.Lock()
        ae = AE(ae_title=ae_title)
        ae.supported_contexts = StoragePresentationContexts
        self.server = ae.start_server(("127.0.0.1", port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._on_store)])

    def _on_store(self, event):
        uid = str(event.request.AffectedSOPInstanceUID)
        with self._lock:
            self.received.append(uid)
            if self.refuse_every_second and len(self.received) % 2 == 0:
                return 0xA700
            self.stored.append(uid)
        return 0x0000

    def shutdown(self):
        self.server.shutdown()


@pytest.fixture
def recording_scp():
    scp = RecordingSCP(free_port())
    yield scp
    scp.shutdown()
