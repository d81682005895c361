#!/usr/bin/env bash
# Installs the Debian packages that the test suite drives as real components, when missing:
#   pgbouncer                 (the e2e suite runs again through PgBouncer in transaction mode)
#   chromium, chromium-driver (real-browser tests of the sign-in pages and the result view)
#   postgresql-15-postgis-3   (PostGIS values: geometry, geography, box2d/box3d; the guard audit)
#   postgresql-15-hypopg, -partman, -repack, -cron  (the guard audit's extensions, tests/test_guard_audit.py)
#   openssl                   (test certificates for TLS to PostgreSQL and the OAuth tests' identity provider)
#   musl-dev, musl-tools      (the C compiler wrapper ring's build needs for the static musl binary)
# A fresh CI machine has none of them; tests/run calls this first. Idempotent and quiet when
# everything is present; concurrent runs are serialised with flock. Needs root (or sudo).
#
#   tests/system-deps.sh            # install what is missing
#   tests/system-deps.sh --check    # exit 1 (and say what) if something is missing
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
# package → a file it installs (present = installed)
declare -A PROVIDES=(
  [pgbouncer]=/usr/sbin/pgbouncer
  [chromium]=/usr/bin/chromium
  [chromium-driver]=/usr/bin/chromedriver
  ["postgresql-$PG_MAJOR-postgis-3"]=/usr/share/postgresql/$PG_MAJOR/extension/postgis.control
  ["postgresql-$PG_MAJOR-hypopg"]=/usr/share/postgresql/$PG_MAJOR/extension/hypopg.control
  ["postgresql-$PG_MAJOR-partman"]=/usr/share/postgresql/$PG_MAJOR/extension/pg_partman.control
  ["postgresql-$PG_MAJOR-repack"]=/usr/share/postgresql/$PG_MAJOR/extension/pg_repack.control
  ["postgresql-$PG_MAJOR-cron"]=/usr/share/postgresql/$PG_MAJOR/extension/pg_cron.control
  [openssl]=/usr/bin/openssl
  [musl-dev]=/usr/bin/x86_64-linux-musl-gcc
  [musl-tools]=/usr/bin/musl-gcc
  [fonts-dejavu-core]=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
)

missing() {
  local pkg
  for pkg in "${!PROVIDES[@]}"; do
    [[ -e ${PROVIDES[$pkg]} ]] || printf '%s\n' "$pkg"
  done | sort
}

if [[ ${1-} == --check ]]; then
  m=$(missing)
  [[ -z $m ]] || { echo "system-deps: missing Debian packages: $(echo $m)" >&2; exit 1; }
  exit 0
fi

[[ -z $(missing) ]] && exit 0

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "system-deps: need root or sudo to install: $(missing | tr '\n' ' ')" >&2; exit 1; }
  sudo=(sudo -n)
fi

lock=/tmp/analytics-mcp-system-deps.lock
exec 9>"$lock"
flock 9
pkgs=$(missing)  # re-read under the lock: a concurrent run may have installed them
[[ -z $pkgs ]] && exit 0
echo "system-deps: installing $(echo $pkgs)" >&2
export DEBIAN_FRONTEND=noninteractive
# Debian's maintainer scripts would start a pgbouncer service; the tests start their own.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod +x "$policy"
  made_policy=1
fi
rc=0
{ "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends $pkgs; } \
  >/tmp/analytics-mcp-system-deps.log 2>&1 || rc=$?
((made_policy)) && "${sudo[@]}" rm -f "$policy"
if ((rc != 0)); then
  tail -n 40 /tmp/analytics-mcp-system-deps.log >&2
  echo "system-deps: apt-get install failed (exit $rc)" >&2
  exit "$rc"
fi
m=$(missing)
[[ -z $m ]] || { echo "system-deps: still missing after install: $(echo $m)" >&2; exit 1; }
echo "system-deps: installed $(echo $pkgs)" >&2
