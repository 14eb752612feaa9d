#!/bin/sh
# Makes sure Debian's nginx is installed at /usr/sbin/nginx for the scale-out test (test/scale/nginx.test.ts runs
# this in its beforeAll) and the bench's `scale` group. Idempotent: does nothing when it is already there. Only the
# binary is needed: the test runs nginx in the foreground with a config, pid file, temp folders and logs of its own,
# so the package's service is never started.
exec "$(dirname "$0")/ensure-debian-package.sh" /usr/sbin/nginx nginx
