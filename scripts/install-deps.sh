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
#   - postgresql (Debian 12: 15): the workers' shared ledger. `payroute up --ledger postgres`
#             and the tests make throwaway clusters of their own with its initdb and
#             pg_ctl, in their run directories, on free ports
#             (crates/launcher/src/pgcluster.rs).
#
# Idempotent: a package already installed is left alone, and `apt-get update` runs only
# when something is missing. Without root it installs nothing and says so (the tests
# then skip what needs these programs, unless CI is set, where they fail).
#
# The packages' own services are NOT started: Debian's postinst would start nginx on :80
# (and haproxy, and PostgreSQL on :5432) through invoke-rc.d; payroute runs them itself,
# with its own config, in the foreground. A temporary policy-rc.d (the mechanism Debian
# provides for exactly this, also used by Docker images) forbids the start during the
# install, and is removed afterwards unless it existed before.
#
# PostgreSQL's package would also create Debian's own cluster, `main` (port 5432, under
# /var/lib/postgresql), which payroute never uses and a systemd machine would start at
# boot. A temporary drop-in of postgresql-common's createcluster.conf,
# `create_main_cluster = off` (its documented switch), keeps it from being made during
# this install; nothing is left to stop or to drop (pg_dropcluster). Whoever wants it
# later: `pg_createcluster 15 main --start`.
set -euo pipefail

PACKAGES=(nginx haproxy groff-base chromium postgresql)

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
    echo "install-deps: without them, the tests that need them (nginx, haproxy, PostgreSQL...) are skipped (outside CI)."
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: no apt-get (not Debian/Ubuntu?); install ${missing[*]} yourself."
    exit 0
fi

echo "install-deps: installing ${missing[*]} from Debian's packages"
policy=/usr/sbin/policy-rc.d
created_policy=0
dropin_dir=/etc/postgresql-common/createcluster.d
dropin="$dropin_dir/payroute-install-deps.conf"
created_dropin=0
created_dropin_dir=0
cleanup() {
    if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi
    if [ "$created_dropin" -eq 1 ]; then rm -f "$dropin"; fi
    if [ "$created_dropin_dir" -eq 1 ]; then rmdir "$dropin_dir" 2>/dev/null || true; fi
}
trap cleanup EXIT

if [ ! -e "$policy" ]; then
    created_policy=1
    printf '#!/bin/sh\n# temporary, from payroute scripts/install-deps.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
fi
if [[ " ${missing[*]} " == *" postgresql "* ]] && [ ! -e "$dropin" ]; then
    [ -d "$dropin_dir" ] || created_dropin_dir=1
    mkdir -p "$dropin_dir"
    created_dropin=1
    printf '# temporary, from payroute scripts/install-deps.sh\ncreate_main_cluster = off\n' >"$dropin"
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

cleanup
trap - EXIT
pg_version=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1 || true)
echo "install-deps: done: $(nginx -v 2>&1), $(haproxy -v 2>&1 | head -n 1), PostgreSQL ${pg_version:-?}"
