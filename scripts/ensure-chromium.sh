#!/bin/sh
# Makes sure Debian's Chromium is installed at /usr/bin/chromium for the dashboard's end-to-end test
# (test/ui/dashboard.e2e.test.ts runs this in its beforeAll). Idempotent: does nothing when it is already there.
set -eu

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

fail() {
  echo "ensure-chromium: $1" >&2
  echo "ensure-chromium: install it yourself (Debian/Ubuntu: apt-get install -y chromium) so that $CHROMIUM exists, then run the tests again." >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "$CHROMIUM is missing and apt-get is not available on this machine"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "$CHROMIUM is missing and installing it needs root (no sudo here)"
  SUDO="sudo -n"
fi

echo "ensure-chromium: $CHROMIUM is missing; installing Debian's chromium package" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update || fail "apt-get update failed"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || fail "apt-get install chromium failed"
[ -x "$CHROMIUM" ] || fail "the chromium package was installed but $CHROMIUM does not exist"
echo "ensure-chromium: installed $($CHROMIUM --version 2>/dev/null || echo chromium)" >&2
