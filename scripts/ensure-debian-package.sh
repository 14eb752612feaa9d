#!/bin/sh
# ensure-debian-package.sh BINARY PACKAGE: makes sure BINARY exists, installing Debian's PACKAGE with apt-get only
# when it is missing (idempotent). Tests that need a system program run it in their beforeAll, through the small
# wrappers next to it (ensure-chromium.sh, ensure-nginx.sh).
set -eu

if [ "$#" -ne 2 ]; then
  echo "usage: $0 BINARY PACKAGE" >&2
  exit 2
fi
BINARY=$1
PACKAGE=$2
NAME="ensure-$PACKAGE"

if [ -x "$BINARY" ]; then
  exit 0
fi

fail() {
  echo "$NAME: $1" >&2
  echo "$NAME: install it yourself (Debian/Ubuntu: apt-get install -y $PACKAGE) so that $BINARY exists, then run the tests again." >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "$BINARY is missing and apt-get is not available on this machine"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "$BINARY is missing and installing it needs root (no sudo here)"
  SUDO="sudo -n"
fi

echo "$NAME: $BINARY is missing; installing Debian's $PACKAGE package" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update || fail "apt-get update failed"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "$PACKAGE" || fail "apt-get install $PACKAGE failed"
[ -x "$BINARY" ] || fail "the $PACKAGE package was installed but $BINARY does not exist"
echo "$NAME: installed $PACKAGE" >&2
