#!/bin/sh
# Makes sure Debian's nginx is installed at /usr/sbin/nginx for the scale-out test (test/scale/nginx.test.ts runs
# this in its beforeAll) and the bench's `scale` group. Idempotent: does nothing when it is already there. Only the
# binary is needed: the test runs nginx in the foreground with a config, pid file, temp folders and logs of its own,
# so the package's service is never started.
set -eu

NGINX=/usr/sbin/nginx

if [ -x "$NGINX" ]; then
  exit 0
fi

fail() {
  echo "ensure-nginx: $1" >&2
  echo "ensure-nginx: install it yourself (Debian/Ubuntu: apt-get install -y nginx-light or nginx) so that $NGINX exists, then run the tests again." >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "$NGINX is missing and apt-get is not available on this machine"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "$NGINX is missing and installing it needs root (no sudo here)"
  SUDO="sudo -n"
fi

echo "ensure-nginx: $NGINX is missing; installing Debian's nginx package" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update || fail "apt-get update failed"
# policy-rc.d-less machines would start the packaged service on port 80; the test never uses it.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y nginx || fail "apt-get install nginx failed"
[ -x "$NGINX" ] || fail "the nginx package was installed but $NGINX does not exist"
echo "ensure-nginx: installed $($NGINX -v 2>&1 || echo nginx)" >&2
