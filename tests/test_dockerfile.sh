#!/usr/bin/env bash
# tests/test_dockerfile.sh — the Dockerfile's build steps, run outside Docker (CI has no engine).
#
#   bash tests/test_dockerfile.sh
#
# 1. Parses the Dockerfile (continuation lines joined, comments dropped) into its stages.
# 2. Replays the build stage in a scratch "root": WORKDIR becomes <root><dir>, COPY copies exactly
#    the files it names from the repo, RUN runs its command there with absolute paths rewritten
#    under <root> (so `cp … /analytics-mcp` lands in <root>/analytics-mcp, never in the real /).
#    <root>/src/target is a symlink to the repo's target dir (and CARGO_TARGET_DIR points there),
#    so the build cache is reused.
# 3. Checks the artefact the final stage COPYs --from the build stage exists and is static, and
#    the final stage: distroless static :nonroot (or scratch), EXPOSE 8892, ENV MCP_HOST=0.0.0.0,
#    USER nonroot, HEALTHCHECK and ENTRYPOINT in exec form pointing at the copied binary.
# 4. Runs the binary the way the image would (the image's ENV, a token, a database on a closed
#    port), probes it with the HEALTHCHECK's own command, then SIGTERM → exit 0; and again as
#    PID 1 in a fresh PID namespace (unshare), skipped visibly if unshare is not permitted.
# Prints "N passed, N failed" as its last line; exits 1 if anything failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKERFILE="${DOCKERFILE:-$ROOT/Dockerfile}"   # overridable, to test this test
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
DEADLINE_S=30

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; fi
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

if [[ ! -f "$DOCKERFILE" ]]; then fail "Dockerfile exists"; finish; fi

# The build stage adds the musl target with rustup; where rustup cannot fetch it, the build
# steps cannot be replayed here at all: say so visibly instead of failing on the machine.
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl &&
  ! rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1; then
  skip "musl target not installable on this machine: the Dockerfile's build steps were not replayed"
  finish
fi

# ── 1. parse ───────────────────────────────────────────────────────────────────
# One instruction per output line: <stage index> TAB <stage name> TAB <INSTRUCTION> TAB <args>
PARSED="$TMP/parsed.tsv"
if ! python3 - "$DOCKERFILE" >"$PARSED" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
logical, cur = [], ""
for raw in text.split("\n"):
    line = raw.rstrip()
    if not cur and (not line.strip() or line.lstrip().startswith("#")):
        continue
    if cur and line.lstrip().startswith("#"):
        continue  # comment lines inside a continuation are dropped, as Docker does
    if line.endswith("\\"):
        cur += line[:-1] + " "
        continue
    cur += line
    logical.append(cur.strip())
    cur = ""
if cur.strip():
    logical.append(cur.strip())
stage, name = -1, ""
for inst in logical:
    word, _, args = inst.partition(" ")
    word = word.upper()
    args = re.sub(r"\s+", " ", args.strip()) if word not in ("RUN",) else args.strip()
    if word == "FROM":
        stage += 1
        m = re.match(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", args, re.I)
        name = (m.group(2) if m and m.group(2) else str(stage))
    print(f"{stage}\t{name}\t{word}\t{args}")
PY
then fail "parse Dockerfile" "$(cat "$PARSED")"; finish; fi
pass "Dockerfile parsed: $(wc -l <"$PARSED") instructions, $(grep -c $'\tFROM\t' "$PARSED") stages"

last_stage="$(tail -n 1 "$PARSED" | cut -f1)"
instr() { # instr STAGE WORD → the args of every such instruction, one per line
  awk -F'\t' -v s="$1" -v w="$2" '$1 == s && $3 == w { print $4 }' "$PARSED"
}

# ── 2. replay the build stage(s) ───────────────────────────────────────────────
# The final stage copies --from=<name>; that is the stage we replay.
copy_from_line="$(instr "$last_stage" COPY | grep -E -- '--from=' | head -n 1)"
if [[ -z "$copy_from_line" ]]; then fail "final stage has COPY --from=<build stage>"; finish; fi
build_name="$(sed -E 's/.*--from=([^ ]+).*/\1/' <<<"$copy_from_line")"
read -r -a copy_words <<<"$(sed -E 's/--[a-z]+=[^ ]+ ?//g' <<<"$copy_from_line")"
artefact_in_build="${copy_words[0]}"
artefact_in_image="${copy_words[${#copy_words[@]}-1]}"
build_stage="$(awk -F'\t' -v n="$build_name" '$3 == "FROM" && $2 == n { print $1 }' "$PARSED")"
if [[ -z "$build_stage" ]]; then fail "build stage '$build_name' exists"; finish; fi
pass "final stage copies $artefact_in_build from stage '$build_name' to $artefact_in_image"

builder_image="$(instr "$build_stage" FROM | awk '{print $1}')"
if [[ "$builder_image" =~ ^rust:([0-9]+\.[0-9]+) ]]; then
  img_ver="${BASH_REMATCH[1]}"
  local_ver="$(rustc --version 2>/dev/null | awk '{print $2}' | cut -d. -f1,2)"
  pass "builder is an official rust image ($builder_image; local toolchain $local_ver)"
  if [[ -n "$local_ver" && "$local_ver" != "$img_ver" ]]; then
    printf 'note: the image builds with Rust %s, this replay with %s\n' "$img_ver" "$local_ver"
  fi
else
  fail "builder stage FROM rust:<version> (pinned)" "$builder_image"
fi

STAGE_ROOT="$TMP/rootfs"
mkdir -p "$STAGE_ROOT"
cwd="$STAGE_ROOT"
build_env=()
replay_ok=1
copied=()
while IFS=$'\t' read -r s _ word args; do
  [[ "$s" == "$build_stage" ]] || continue
  case "$word" in
    FROM|ARG|LABEL) ;;
    WORKDIR)
      case "$args" in /*) cwd="$STAGE_ROOT$args" ;; *) cwd="$cwd/$args" ;; esac
      mkdir -p "$cwd"
      # reuse the repo's build cache: ./target in the build dir is the repo's target dir
      [[ -e "$cwd/target" ]] || ln -s "$TARGET_DIR" "$cwd/target" ;;
    ENV)
      while IFS= read -r kv; do build_env+=("$kv"); done < <(python3 -c \
        'import shlex,sys; [print(w) for w in shlex.split(sys.argv[1])]' "$args") ;;
    COPY)
      if [[ "$args" == *--from=* ]]; then fail "build stage COPY --from is not replayable" "$args"; replay_ok=0; continue; fi
      read -r -a words <<<"$(sed -E 's/--[a-z]+=[^ ]+ ?//g' <<<"$args")"
      dest="${words[${#words[@]}-1]}"
      case "$dest" in /*) dest="$STAGE_ROOT$dest" ;; *) dest="$cwd/$dest" ;; esac
      mkdir -p "$dest"
      for src in "${words[@]:0:${#words[@]}-1}"; do
        # as Docker does: a directory source copies its contents into the destination
        if [[ -d "$ROOT/$src" ]]; then cp -a "$ROOT/$src/." "$dest/"; copied+=("$src")
        elif [[ -e "$ROOT/$src" ]]; then cp -a "$ROOT/$src" "$dest/"; copied+=("$src")
        else fail "COPY source $src exists in the repo"; replay_ok=0; fi
      done ;;
    RUN)
      # absolute paths → under the scratch root (an argument starting with / after a space, = or start)
      cmd="$(sed -E "s#(^|[[:space:]=])/#\1$STAGE_ROOT/#g" <<<"$args")"
      printf '  replay RUN (in %s): %s\n' "${cwd#"$TMP"/}" "$args"
      start=$SECONDS
      if out="$(cd "$cwd" && env "${build_env[@]}" CARGO_TARGET_DIR="$TARGET_DIR" bash -ec "$cmd" 2>&1)"; then
        pass "RUN $(cut -c1-70 <<<"$args")… ($((SECONDS - start)) s)"
      else
        fail "RUN $args" "$(tail -n 25 <<<"$out")"; replay_ok=0
      fi ;;
    *) fail "build stage instruction $word is not replayed by this test" "$args"; replay_ok=0 ;;
  esac
done <"$PARSED"

# exactly the files the build needs, nothing from the host leaks in
if [[ "${copied[*]}" == "Cargo.toml Cargo.lock main.rs web" ]]; then
  pass "build stage COPYs exactly Cargo.toml Cargo.lock main.rs web"
else
  fail "build stage COPYs exactly Cargo.toml Cargo.lock main.rs web" "got: ${copied[*]}"
fi
if grep -q -- '--locked' <(instr "$build_stage" RUN) && grep -q 'x86_64-unknown-linux-musl' <(instr "$build_stage" RUN); then
  pass "RUN uses cargo build --locked for x86_64-unknown-linux-musl"
else
  fail "RUN uses cargo build --locked for x86_64-unknown-linux-musl" "$(instr "$build_stage" RUN)"
fi
if ((replay_ok == 0)); then finish; fi

ART="$STAGE_ROOT${artefact_in_build}"
if [[ -x "$ART" && ! -L "$ART" ]]; then pass "artefact $artefact_in_build exists after the build"; else fail "artefact $artefact_in_build missing after the build" "$(ls -la "$STAGE_ROOT" 2>&1)"; finish; fi
desc="$(file -b "$ART" 2>&1)"
if grep -qE 'static(-pie)? linked' <<<"$desc" && ! grep -q interpreter <<<"$desc"; then
  pass "artefact is statically linked (file)"
else
  fail "artefact is statically linked (file)" "$desc"
fi
lddout="$(ldd "$ART" 2>&1)"
if grep -qE 'not a dynamic executable|statically linked' <<<"$lddout"; then pass "artefact is static (ldd)"; else fail "artefact is static (ldd)" "$lddout"; fi

# ── 3. the final stage ─────────────────────────────────────────────────────────
final_from="$(instr "$last_stage" FROM | awk '{print $1}')"
if [[ "$final_from" =~ ^gcr\.io/distroless/static(-debian[0-9]+)?:nonroot$ || "$final_from" == scratch ]]; then
  pass "final stage is $final_from"
else
  fail "final stage is gcr.io/distroless/static-debian12:nonroot (or scratch)" "$final_from"
fi
if instr "$last_stage" RUN | grep -q .; then fail "final stage has no RUN (no shell in distroless)" "$(instr "$last_stage" RUN)"; else pass "final stage has no RUN"; fi
if instr "$last_stage" EXPOSE | tr ' ' '\n' | grep -qE '^8892(/tcp)?$'; then pass "EXPOSE 8892"; else fail "EXPOSE 8892" "$(instr "$last_stage" EXPOSE)"; fi

IMAGE_ENV="$TMP/image.env"
instr "$last_stage" ENV | while IFS= read -r line; do
  python3 -c '
import shlex, sys
words = shlex.split(sys.argv[1])
if len(words) >= 2 and "=" not in words[0]:   # legacy "ENV KEY value"
    print(words[0] + "=" + " ".join(words[1:]))
else:
    for w in words:
        print(w)' "$line"
done >"$IMAGE_ENV"
if grep -qx 'MCP_HOST=0.0.0.0' "$IMAGE_ENV"; then pass "ENV MCP_HOST=0.0.0.0"; else fail "ENV MCP_HOST=0.0.0.0" "$(cat "$IMAGE_ENV")"; fi
if ! grep -q '^MCP_PORT=' "$IMAGE_ENV" || grep -qx 'MCP_PORT=8892' "$IMAGE_ENV"; then pass "MCP_PORT is 8892 (as exposed)"; else fail "MCP_PORT matches EXPOSE 8892" "$(cat "$IMAGE_ENV")"; fi
if grep -qE '^(DATABASE_URL|MCP_AUTH_TOKENS)=' "$IMAGE_ENV"; then fail "no secrets baked into the image ENV" "$(cut -d= -f1 "$IMAGE_ENV")"; else pass "no DATABASE_URL/tokens baked into the image"; fi

user="$(instr "$last_stage" USER | tail -n 1)"
if [[ "$user" =~ ^(nonroot|65532)(:(nonroot|65532))?$ ]]; then pass "USER $user"; else fail "USER nonroot" "got: '${user}'"; fi

json_exec() { # json_exec ARGS → the exec-form array, one element per line; fails on shell form
  python3 -c '
import json, sys
v = json.loads(sys.argv[1])
assert isinstance(v, list) and v and all(isinstance(x, str) for x in v)
print("\n".join(v))' "$1" 2>/dev/null
}
hc="$(instr "$last_stage" HEALTHCHECK | tail -n 1)"
hc_json="$(sed -E 's/^.*\bCMD[[:space:]]+//' <<<"$hc")"
if mapfile -t HC < <(json_exec "$hc_json") && ((${#HC[@]})); then
  if [[ "${HC[*]}" == "$artefact_in_image healthcheck" ]]; then
    pass "HEALTHCHECK exec form: [\"$artefact_in_image\", \"healthcheck\"]"
  else
    fail "HEALTHCHECK runs [\"$artefact_in_image\", \"healthcheck\"]" "${HC[*]}"
  fi
else
  fail "HEALTHCHECK CMD is exec form (JSON array; no shell in distroless)" "$hc"
  HC=("$artefact_in_image" healthcheck)   # keep testing the binary itself below
fi
ep="$(instr "$last_stage" ENTRYPOINT | tail -n 1)"
if mapfile -t EP < <(json_exec "$ep") && ((${#EP[@]})); then
  if [[ "${EP[0]}" == "$artefact_in_image" ]]; then pass "ENTRYPOINT exec form: $ep"; else fail "ENTRYPOINT runs $artefact_in_image" "$ep"; fi
else
  fail "ENTRYPOINT is exec form (the server must be PID 1 to get SIGTERM)" "$ep"
  EP=("$artefact_in_image")
fi
if instr "$last_stage" CMD | grep -q .; then
  mapfile -t CMDV < <(json_exec "$(instr "$last_stage" CMD | tail -n 1)")
else
  CMDV=()
fi

# ── 4. run it the way the image would ──────────────────────────────────────────
IMG="$TMP/image"
mkdir -p "$IMG$(dirname "$artefact_in_image")"
cp "$ART" "$IMG$artefact_in_image"
# the image's command line, with our copy of the binary in place of the image path
image_argv=("$IMG${EP[0]:-$artefact_in_image}" "${EP[@]:1}" "${CMDV[@]}")
hc_argv=("$IMG${HC[0]:-$artefact_in_image}" "${HC[@]:1}")
mapfile -t run_env <"$IMAGE_ENV"
PORT="$(free_port)"; DBPORT="$(free_port)"
TOKEN="tok-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# TLS on, trust from the OS store: the path distroless carries (/etc/ssl/certs/ca-certificates.crt)
DB_TLS="sslmode=verify-full&sslrootcert=system"
container_env=("${run_env[@]}" "MCP_PORT=$PORT" "MCP_AUTH_TOKENS=ops:$TOKEN"
               "DATABASE_URL=postgresql://analytics_ro:pw@127.0.0.1:$DBPORT/app?$DB_TLS")

wait_healthy() { # wait_healthy LOGFILE PID → 0 when the image's HEALTHCHECK command passes
  local end=$((SECONDS + DEADLINE_S))
  while ((SECONDS < end)); do
    if ! kill -0 "$2" 2>/dev/null; then return 1; fi
    if env -i "${run_env[@]}" "MCP_PORT=$PORT" "${hc_argv[@]}" >/dev/null 2>&1; then return 0; fi
    sleep 0.1 # polling interval
  done
  return 1
}
wait_exit() { # wait_exit PID → its exit status, or 124 after the deadline
  local end=$((SECONDS + DEADLINE_S))
  while kill -0 "$1" 2>/dev/null; do
    if ((SECONDS >= end)); then return 124; fi
    sleep 0.05
  done
  wait "$1"
}

# 4a. as an ordinary process
LOG="$TMP/server.log"
(cd "$TMP" && exec env -i "${container_env[@]}" "${image_argv[@]}") >"$LOG" 2>&1 &
SRV=$!; PIDS+=("$SRV")
if wait_healthy "$LOG" "$SRV"; then
  pass "HEALTHCHECK command exits 0 against the running image binary (MCP_HOST=0.0.0.0, DB down)"
else
  fail "HEALTHCHECK command exits 0 against the running image binary" "$(cat "$LOG")"
fi
code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d '{"jsonrpc":"2.0","id":1,"method":"ping"}' "http://127.0.0.1:$PORT/mcp" 2>/dev/null || true)"
if [[ "$code" == 200 ]]; then pass "POST /mcp ping with the token → 200"; elif command -v curl >/dev/null; then fail "POST /mcp ping with the token → 200" "got $code"; fi
kill -TERM "$SRV" 2>/dev/null
wait_exit "$SRV"; rc=$?
if ((rc == 0)); then pass "SIGTERM → exit 0"; else fail "SIGTERM → exit 0 (got $rc)" "$(cat "$LOG")"; fi
if grep -q 'reason=unreachable' "$LOG" && ! grep -q 'invalid configuration' "$LOG"; then
  pass "sslrootcert=system loads the OS trust store (an empty environment, as in the image)"
else
  fail "sslrootcert=system loads the OS trust store" "$(cat "$LOG")"
fi
if grep -qF "$TOKEN" "$LOG"; then fail "the token never reaches the log" "$(cat "$LOG")"; else pass "the token never reaches the log"; fi
if env -i "${run_env[@]}" "MCP_PORT=$PORT" "${hc_argv[@]}" >/dev/null 2>&1; then
  fail "HEALTHCHECK command exits 1 once the server is gone"
else
  pass "HEALTHCHECK command exits 1 once the server is gone"
fi

# 4b. as PID 1 (what `docker run` does with an exec-form ENTRYPOINT)
if command -v unshare >/dev/null && unshare --pid --fork --mount-proc true 2>/dev/null; then
  PORT="$(free_port)"
  container_env=("${run_env[@]}" "MCP_PORT=$PORT" "MCP_AUTH_TOKENS=ops:$TOKEN"
                 "DATABASE_URL=postgresql://analytics_ro:pw@127.0.0.1:$DBPORT/app?$DB_TLS")
  LOG="$TMP/server-pid1.log"
  (cd "$TMP" && exec unshare --pid --fork --mount-proc env -i "${container_env[@]}" "${image_argv[@]}") >"$LOG" 2>&1 &
  UNS=$!; PIDS+=("$UNS")
  # the server's host PID: the child of unshare (env -i execs in place)
  inner=""
  end=$((SECONDS + DEADLINE_S))
  while ((SECONDS < end)) && [[ -z "$inner" ]]; do
    inner="$(pgrep -P "$UNS" 2>/dev/null | head -n 1)"; [[ -n "$inner" ]] || sleep 0.05
  done
  if [[ -n "$inner" ]]; then PIDS+=("$inner"); fi
  nspid="$(awk '/^NSpid:/ {print $NF}' "/proc/$inner/status" 2>/dev/null)"
  if [[ "$nspid" == 1 ]]; then pass "server runs as PID 1 in its own PID namespace"; else fail "server runs as PID 1 (NSpid=$nspid)"; fi
  if wait_healthy "$LOG" "$inner"; then pass "HEALTHCHECK exits 0 against the PID-1 server"; else fail "HEALTHCHECK exits 0 against the PID-1 server" "$(cat "$LOG")"; fi
  kill -TERM "$inner" 2>/dev/null
  wait_exit "$UNS"; rc=$?
  if ((rc == 0)); then pass "PID 1: SIGTERM → exit 0"; else fail "PID 1: SIGTERM → exit 0 (got $rc)" "$(cat "$LOG")"; fi
else
  skip "PID-1 run: unshare --pid --fork --mount-proc is not permitted here"
fi

finish
