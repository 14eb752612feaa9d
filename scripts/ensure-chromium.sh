#!/bin/sh
# Makes sure Debian's Chromium is installed at /usr/bin/chromium for the dashboard's end-to-end test
# (test/ui/dashboard.e2e.test.ts runs this in its beforeAll). Idempotent: does nothing when it is already there.
exec "$(dirname "$0")/ensure-debian-package.sh" /usr/bin/chromium chromium
