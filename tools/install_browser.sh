#!/usr/bin/env bash
# Install the browser the docs test drives: Debian's chromium and chromium-driver (no browser download of its own).
# Does nothing when both are on PATH. Uses sudo only when not root. Called by `make browser` (part of `make test`).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    echo "browser: $(chromium --version 2>/dev/null | head -1), $(chromedriver --version | head -1)"; exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install_browser.sh: no apt-get here: install chromium and its chromedriver (same version) by hand, then re-run" >&2; exit 1
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "browser: installing Debian's chromium and chromium-driver with apt-get (about a minute, quiet until done)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "browser: $(chromium --version 2>/dev/null | head -1), $(chromedriver --version | head -1)"
