"""`cxr export verify` runs the very verifier that ships inside every package."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_client_carries_an_unchanged_copy_of_the_package_verifier():
    shipped = (REPO / "exports" / "recipient_verify.py").read_text()
    vendored = (REPO / "clients" / "cxr" / "src" / "cxr_client" / "recipient_verify.py").read_text()
    assert vendored == shipped, "copy exports/recipient_verify.py to clients/cxr/src/cxr_client/ again"
