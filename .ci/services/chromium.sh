#!/usr/bin/env bash
# CI: a headless Chromium for tests/enterprise/test_service_web.py (the tenant's web page in a
# real browser, driven over the DevTools protocol on a pipe; nothing is started here and no port
# is opened: each test starts and stops its own browser).
#
# Needs Debian's chromium (chromium.packages). Checks that it starts headless and runs a page's
# JavaScript (root needs --no-sandbox), then appends DEEPSEEK_TEST_CHROMIUM=<binary> to
# $CI_SERVICES_ENV. Idempotent: it only reads; a Chromium that does not start publishes nothing,
# and the tests skip with the reason.
set -euo pipefail

env_file="${CI_SERVICES_ENV:-/dev/null}"
binary="$(command -v chromium || true)"
if [ -z "$binary" ]; then
    echo "chromium: not installed (apt-get install chromium)"
    exit 1
fi
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
page='data:text/html,<p id=x>no script</p><script>document.getElementById("x").textContent="script ran"</script>'
dom="$(timeout 60 "$binary" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$profile" \
       --dump-dom "$page" 2> /dev/null || true)"
case "$dom" in
    *"script ran"*) ;;
    *) echo "chromium: $binary did not run a page's script headless"; exit 1 ;;
esac
echo "DEEPSEEK_TEST_CHROMIUM=$binary" >> "$env_file"
echo "chromium: $("$binary" --version 2> /dev/null) ready ($binary)"
