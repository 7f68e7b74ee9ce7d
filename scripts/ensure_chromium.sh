#!/usr/bin/env bash
# Make sure a headless Chromium is on this machine for the browser tests (tests/ui): Debian's `chromium`
# package, installed with apt-get when missing (as root, or through passwordless sudo). Prints the binary's
# path. Exit 1 when it is missing and cannot be installed; the browser tests then skip and say why.
set -uo pipefail

find_chromium() {
    for candidate in "${SOUNDSCAPE_CHROMIUM:-}" /usr/lib/chromium/chromium "$(command -v chromium || true)" \
                     "$(command -v chromium-browser || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if find_chromium; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: chromium is missing and this machine has no apt-get; install Chromium yourself" \
         "(or set SOUNDSCAPE_CHROMIUM to its binary)" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure_chromium: chromium is missing and installing it needs root (apt-get install chromium)" >&2
        exit 1
    fi
fi
echo "ensure_chromium: installing Debian's chromium (apt-get)..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium; } >&2; then
    echo "ensure_chromium: apt-get could not install chromium" >&2
    exit 1
fi
find_chromium || { echo "ensure_chromium: chromium installed but its binary was not found" >&2; exit 1; }
