"""The worst requests a client can send for the server's memory (issue 11), and a driver that fires
them at a running server from many connections at once.

Shared by tests/test_limits.py (which asserts the process's VmHWM against the README's documented
bound) and bench/run.sh (which measures the figure the README states). Standard library only.

Each shape is the heaviest of its kind at the server's default limits: the 1 MiB body, MCP_MAX_BATCH
messages, MCP_MAX_RESULT_BYTES per answer, 65,536-character text arguments, 4,096 JSON values.

    python3 tests/worst_case.py --port P --token T --connections 32 --rounds 3 [--pid PID]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
from collections import Counter

MAX_BODY = 1024 * 1024
MAX_TEXT_CHARS = 32_768
MAX_JSON_VALUES = 4096


def _call(i: int, args: dict, name: str = "query") -> dict:
    return {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name, "arguments": args}}


def _dump(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def attack_batch(sql: str = "SELECT repeat('x', 140000)") -> bytes:
    """Issue 11's attack: a 2025-03-26 batch of as many `tools/call query` as the largest body holds."""
    messages = [_dump(_call(i, {"sql": sql})) for i in range(MAX_BODY // 64)]
    size, n = 1, 0  # "[" … "]": each message adds itself and a comma
    while size + len(messages[n]) + 1 <= MAX_BODY:
        size += len(messages[n]) + 1
        n += 1
    body = b"[" + b",".join(messages[:n]) + b"]"
    return body + b" " * (MAX_BODY - len(body))  # exactly the largest body accepted


def quote_query(budget: int) -> str:
    """A query whose one row fills the result budget with `"` (escaped twice: in the row's JSON and
    again in the text block), so its answer is as large as an answer can be."""
    return f"SELECT repeat('\"', {budget // 2 - 32}) AS q"


def shapes(max_batch: int = 20, budget: int = 150_000) -> dict[str, bytes]:
    answers = [_call(i, {"sql": quote_query(budget)}) for i in range(max_batch)]
    prefix = quote_query(budget) + " -- "
    wide = prefix + "😀" * (MAX_TEXT_CHARS - len(prefix))  # longest SQL, 4 bytes a character
    n_wide = max(1, min(max_batch, (MAX_BODY - 2) // (len(_dump(_call(0, {"sql": wide}))) + 1)))
    parens = "SELECT " + "(" * (MAX_TEXT_CHARS - 7)  # the guard's lexer at its most expensive
    n_parens = min(max_batch, (MAX_BODY - 2) // (len(_dump(_call(0, {"sql": parens}))) + 1))
    base_values = 17  # the envelope, name, arguments and sql of one call
    objects = (MAX_JSON_VALUES - base_values) // 3  # {"":0} is three values
    return {
        "attack": attack_batch(),
        "answers": _dump(answers),
        "wide_sql": _dump([_call(i, {"sql": wide}) for i in range(n_wide)]),
        "lexer": _dump([_call(i, {"sql": parens}) for i in range(n_parens)]),
        "values": _dump(_call(1, {"sql": "SELECT 1", "x": [{"": 0}] * objects})),
        "echo": _dump(_call(1, {}, name="\u0001" * ((MAX_BODY - 200) // 6))),
    }


def post(port: int, token: str | None, body: bytes, timeout: float = 120.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request("POST", "/mcp", body, headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def drive(port: int, token: str | None, connections: int, rounds: int,
          bodies: dict[str, bytes] | None = None) -> Counter:
    """Every connection sends every shape `rounds` times, starting at a different shape, all at once.
    Returns how many answers each (shape, HTTP status) got; raises on a transport error."""
    bodies = bodies or shapes()
    names = list(bodies)
    seen: Counter = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(connections)

    def worker(k: int) -> None:
        try:
            start.wait(timeout=60)
            for r in range(rounds * len(names)):
                name = names[(k + r) % len(names)]
                status, _ = post(port, token, bodies[name])
                with lock:
                    seen[(name, status)] += 1
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    if errors:
        raise errors[0]
    return seen


def vm_kib(pid: int, field: str = "VmHWM") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-batch", type=int, default=20)
    ap.add_argument("--budget", type=int, default=150_000)
    ap.add_argument("--pid", type=int, help="print this process's VmHWM before and after")
    a = ap.parse_args()
    before = vm_kib(a.pid) if a.pid else 0
    seen = drive(a.port, a.token, a.connections, a.rounds, shapes(a.max_batch, a.budget))
    after = vm_kib(a.pid) if a.pid else 0
    summary = " ".join(f"{name}:{status}={n}" for (name, status), n in sorted(seen.items()))
    print(f"WORST connections={a.connections} rounds={a.rounds} hwm_before_kib={before} "
          f"hwm_after_kib={after} {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
