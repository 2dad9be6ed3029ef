#!/usr/bin/env bash
# The web page's end-to-end test drives Debian's chromium through Playwright; Playwright's own
# browser download is not used (no internet at test time), so install the apt package if absent.
set -euo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "$CHROMIUM is missing; install it as root: apt-get update && apt-get install -y chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
