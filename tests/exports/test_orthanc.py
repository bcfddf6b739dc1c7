"""A real Orthanc PACS on loopback accepts the export over C-STORE, with demographics and
synthetic markings intact (read back through its REST API)."""

import json
import urllib.request

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import SecondaryCaptureImageStorage
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from exports import services

pytestmark = pytest.mark.slow


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _decoded_by_orthanc(base, orthanc_id):
    """The pixels as Orthanc itself decodes them (its own codecs, not pydicom's)."""
    import io

    import numpy as np
    from PIL import Image

    request = urllib.request.Request(f"{base}/instances/{orthanc_id}/frames/0/image-uint8",
                                     headers={"Accept": "image/png"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())))


@pytest.mark.parametrize("transfer_syntax", ["explicit", "jpegls", "rle"])
def test_orthanc_accepts_the_export_over_c_store(orthanc, xray_cohort, tmp_path, transfer_syntax):
    from pydicom.uid import JPEGLSLossless

    base, dicom_port = orthanc
    xray_cohort.name = "Épanchement pleural"  # UTF-8 text must arrive unchanged
    xray_cohort.save(update_fields=["name"])
    services.write_cohort_package(xray_cohort, tmp_path / "pkg", transfer_syntax=transfer_syntax)
    files = sorted((tmp_path / "pkg").glob("PT*/ST*/SE*/IM*"))
    ae = AE(ae_title="CXRPLATFORM")
    for syntax in (ExplicitVRLittleEndian, RLELossless, JPEGLSLossless):  # one context each: the SCP picks one per context
        ae.add_requested_context(SecondaryCaptureImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", dicom_port, ae_title="ORTHANC")
    assert assoc.is_established
    try:
        for path in files:
            status = assoc.send_c_store(pydicom.dcmread(path))
            assert status.Status == 0x0000, f"{path}: {status}"
    finally:
        assoc.release()

    instances = _get(base + "/instances")
    assert len(instances) == len(files) == 4
    expected = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in files}
    for orthanc_id in instances:
        tags = _get(f"{base}/instances/{orthanc_id}/tags")
        value = {key: entry.get("Value") for key, entry in tags.items()}
        source = expected[value["0008,0018"]]
        assert value["0010,0040"] == source.PatientSex
        assert value["0010,1010"] == source.PatientAge and value["0010,1010"].endswith("Y")
        assert value["0010,2160"] == source.EthnicGroup
        assert value["0018,0015"] == "CHEST"
        assert value["0008,001c"] == "YES"  # Synthetic Data
        assert value["0008,0064"] == "SYN"
        assert value["0010,0010"].startswith("SYNTHETIC") and value["0010,0020"].startswith("SYNTHETIC")
        assert value["0008,0008"] == "DERIVED\\SECONDARY"
        assert "Épanchement pleural" in value["0008,1030"]  # Study Description, as written
        assert value["0012,0020"] == source.ClinicalTrialProtocolID
        assert (_decoded_by_orthanc(base, orthanc_id) == source.pixel_array).all()
    protocol = source.ClinicalTrialProtocolID
    found = json.loads(urllib.request.urlopen(urllib.request.Request(
        base + "/tools/find", method="POST",
        data=json.dumps({"Level": "Instance", "Query": {"ClinicalTrialProtocolID": protocol}}).encode()),
        timeout=10).read())
    assert len(found) == 4  # the whole cohort is found by its protocol ID
    patients = _get(base + "/patients")
    assert len(patients) == 4
