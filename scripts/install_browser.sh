#!/bin/sh
# Chromium and its driver from the distribution's packages, for the demo Space's browser test
# (tests/test_space.py; `make test` runs this first). Nothing downloads a browser at test time: the test drives
# this system Chromium through the system chromedriver with Selenium. Where the machine does not allow an install
# (not root, no apt-get, no package source) this says so in one line and succeeds: the test then skips with its
# reason. Never fails the set-up.
have() { command -v "$1" >/dev/null 2>&1; }
browser() { have chromium || have chromium-browser || have google-chrome; }
driver() { have chromedriver || [ -x /usr/lib/chromium-browser/chromedriver ]; }

if browser && driver; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! have apt-get; then
    echo "install_browser: Chromium or chromedriver missing, and no root with apt-get here: the browser test of the Space will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1; }
# The package lists may be empty on a fresh image: refresh them once if the first try finds no package.
if install || { apt-get update -q >/dev/null 2>&1 && install; }; then
    echo "install_browser: installed chromium and chromium-driver (apt-get)" >&2
else
    echo "install_browser: apt-get could not install chromium and chromium-driver: the browser test of the Space will skip" >&2
fi
exit 0
