#!/bin/sh
# Install vitalcore into ./.venv on Debian (or any machine with Python 3.11 and a C compiler).
#   sh scripts/setup.sh        the library and its command (python -m vitalcore)
#   sh scripts/setup.sh apps   plus the example apps' web stack (examples/)
#   sh scripts/setup.sh test   plus what the test suite needs (the apps included)
# System packages come from apt-get (with sudo unless run as root); Python packages from PyPI.
set -eu
cd "$(dirname "$0")/.."
mode="${1:-run}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

need=""
python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null || need="$need python3"
python3 -c 'import ensurepip, venv' 2>/dev/null || need="$need python3-venv"
command -v cc >/dev/null 2>&1 || need="$need gcc"
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null || need="$need python3-dev"
if [ "$mode" = test ] || [ "$mode" = apps ]; then
    # Pango for weasyprint's PDF reports (ABPM, service reports)
    ldconfig -p 2>/dev/null | grep -q libpangoft2-1.0 || need="$need libpango-1.0-0 libpangoft2-1.0-0"
fi
if [ "$mode" = test ]; then  # real peers the tests start: an MQTT broker and its clients
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need="$need mosquitto"
    command -v mosquitto_pub >/dev/null 2>&1 || need="$need mosquitto-clients"
    # PostgreSQL server binaries (the tests start their own cluster in a tmp dir)
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$need postgresql"
    # pdftotext/pdftoppm to read the PDF reports back
    command -v pdftotext >/dev/null 2>&1 || need="$need poppler-utils"
    # Debian's Chromium for the example apps' browser tests (Playwright drives it)
    [ -x /usr/bin/chromium ] || need="$need chromium"
fi
if [ -n "$need" ]; then
    if command -v apt-get >/dev/null 2>&1; then
        $SUDO apt-get update -q
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $need
    else
        echo "vitalcore setup: please install:$need" >&2
        exit 1
    fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$mode" = test ]; then
    .venv/bin/python -m pip install -q ".[test]"
elif [ "$mode" = apps ]; then
    .venv/bin/python -m pip install -q ".[apps]"
else
    .venv/bin/python -m pip install -q .
fi
echo "vitalcore installed in .venv ($(.venv/bin/python -c 'import vitalcore; print(vitalcore.__version__)'))"
