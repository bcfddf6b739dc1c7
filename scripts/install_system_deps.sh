#!/usr/bin/env bash
# Installs the system packages the tests use (DICOM validators, a PACS, a browser)
# when they are missing. Needs root (apt-get); elsewhere it says what to install.
set -euo pipefail
need=()
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v dcmdump >/dev/null 2>&1 || need+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
# The DICOMweb plugin (STOW-RS, QIDO-RS) for the "push to a PACS" tests.
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "System packages missing: ${need[*]}. Install them with: sudo apt-get install ${need[*]}" >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
echo "Installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The orthanc package starts a service on install; the tests start their own on other ports.
(service orthanc stop || pkill -x Orthanc || true) >/dev/null 2>&1
