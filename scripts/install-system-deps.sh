#!/usr/bin/env bash
# Debian packages the project needs beside Python. The audit: WeasyPrint's font subsetting
# (libharfbuzz-subset0). With --test, also what the tests use: poppler-utils (pdftotext / pdftoppm: the tests
# read the PDF report) and chromium (the security tests load the HTML report in a real browser and check that
# no hostile text ran as a script).
# Installs only what is missing; needs root (or sudo). Without either it says what to install and goes on.
set -euo pipefail
packages=(libharfbuzz-subset0)
if [ "${1:-}" = "--test" ]; then packages+=(poppler-utils chromium); fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "warning: cannot install ${missing[*]} (not root, no sudo); install them for PDF font subsetting and the tests" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
