#!/usr/bin/env bash
# Installs the system packages that payroute's test suite and `payroute up --lb nginx|haproxy`
# need, from Debian's own packages:
#   - nginx   (Debian 12: 1.22): the load balancer of the compose file; the tests run
#             `nginx -t` on its config and `payroute up --lb nginx` end to end.
#   - haproxy (Debian 12: 2.6):  the alternative load balancer; the tests run `haproxy -c`.
#   - chromium:  the bench's report is rendered headless to PNG by a test
#                (crates/payroute/tests/bench_browser.rs).
#   - groff-base: what `man` formats pages with; the tests read `payroute man`'s pages
#             with `groff -ww` (no warning allowed).
#
# Idempotent: a package already installed is left alone, and `apt-get update` runs only
# when something is missing. Without root it installs nothing and says so (the tests
# then skip what needs these programs, unless CI is set, where they fail).
#
# The packages' own services are NOT started: Debian's postinst would start nginx on :80
# (and haproxy) through invoke-rc.d; payroute runs them itself, with its own config, in
# the foreground. A temporary policy-rc.d (the mechanism Debian provides for exactly
# this, also used by Docker images) forbids the start during the install, and is removed
# afterwards unless it existed before.
set -euo pipefail

PACKAGES=(nginx haproxy groff-base chromium)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: already installed: ${PACKAGES[*]}"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: not root, installing nothing. Missing: ${missing[*]}."
    echo "install-deps: run 'sudo $0', or 'sudo apt-get install ${missing[*]}'."
    echo "install-deps: without them, the nginx/haproxy tests are skipped (outside CI)."
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: no apt-get (not Debian/Ubuntu?); install ${missing[*]} yourself."
    exit 0
fi

echo "install-deps: installing ${missing[*]} from Debian's packages"
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from payroute scripts/install-deps.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
    trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

if [ "$created_policy" -eq 1 ]; then
    rm -f "$policy"
    trap - EXIT
fi
echo "install-deps: done: $(nginx -v 2>&1), $(haproxy -v 2>&1 | head -n 1)"
