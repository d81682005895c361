# shellcheck shell=bash
# Shared by the shell tests (source it): TAP-like result lines, the closing
# 'N passed, N failed' line that tests/run and CI read, and a free loopback port.
# A test that defines cleanup() gets it called by finish() (and should trap it on EXIT itself).

PASS=0; FAIL=0; SKIP=0
pass() { PASS=$((PASS + 1)); printf 'ok   - %s\n' "$1"; }
# fail WHAT [DETAIL]: the detail (what the program printed) is shown indented, cut to 30 lines.
fail() {
  FAIL=$((FAIL + 1)); printf 'FAIL - %s\n' "$1"
  if [[ -n "${2-}" ]]; then printf '%s\n' "$2" | tail -n 30 | sed 's/^/       | /'; fi
}
skip() { SKIP=$((SKIP + 1)); printf 'SKIP: %s\n' "$1"; }

# Prints the counts, runs cleanup() if the test has one, exits non-zero on any failure.
finish() {
  if ((SKIP)); then printf '(%d skipped)\n' "$SKIP"; fi
  printf '%d passed, %d failed\n' "$PASS" "$FAIL"
  if declare -F cleanup >/dev/null; then cleanup; fi
  trap - EXIT
  ((FAIL == 0))
  exit $?
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
