"""Small network helpers shared by test_faults.py and test_hostile_http.py.

* ``McpClient``: one keep-alive HTTP/1.1 connection that makes MCP tool calls and classifies every
  outcome (ok / isError / HTTP status / JSON-RPC error / exception) instead of asserting, so load
  loops can count failures and report their exact text.
* raw-socket helpers: read one HTTP response off a socket (with a deadline), read to EOF.
* ``parse_prometheus``: a strict-enough parser for the Prometheus text format 0.0.4.
* ``raise_nofile``: lift RLIMIT_NOFILE for tests that open hundreds of sockets.
* ``rss_kib``: a process's resident set size from /proc.
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import resource
import socket
import time
from dataclasses import dataclass, field

from conftest import LATEST

_ids = itertools.count(1)


@dataclass
class Outcome:
    kind: str          # "ok" | "is_error" | "http" | "rpc_error" | "exception"
    detail: str        # error text / status line / exception repr ("" when ok)
    started: float     # time.monotonic() when the call started
    finished: float
    status: int = 0    # HTTP status (0 when no response)
    result: dict | None = None  # structuredContent when ok

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def elapsed(self) -> float:
        return self.finished - self.started


def tool_call_body(sql: str, id_: int | None = None, max_rows: int | None = None) -> bytes:
    args: dict = {"sql": sql}
    if max_rows is not None:
        args["max_rows"] = max_rows
    return json.dumps({"jsonrpc": "2.0", "id": next(_ids) if id_ is None else id_, "method": "tools/call",
                       "params": {"name": "query", "arguments": args}}).encode()


def mcp_headers(server, body_len: int | None = None) -> dict[str, str]:
    h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
         "MCP-Protocol-Version": LATEST, **server.auth_headers()}
    if body_len is not None:
        h["Content-Length"] = str(body_len)
    return h


def classify(status: int, data: bytes, started: float) -> Outcome:
    now = time.monotonic()
    if status != 200:
        return Outcome("http", f"HTTP {status}: {data[:300]!r}", started, now, status)
    try:
        env = json.loads(data)
    except ValueError:
        return Outcome("http", f"HTTP 200 with a non-JSON body: {data[:300]!r}", started, now, status)
    if "error" in env:
        return Outcome("rpc_error", json.dumps(env["error"]), started, now, status)
    result = env.get("result") or {}
    if result.get("isError"):
        return Outcome("is_error", result["content"][0]["text"], started, now, status)
    return Outcome("ok", "", started, now, status, result.get("structuredContent"))


class McpClient:
    """One keep-alive connection making query tool calls. Never raises on a failed call: it returns
    an Outcome and reconnects for the next call if the connection broke."""

    def __init__(self, server, timeout: float = 30.0):
        self.server = server
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.connections_opened = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=self.timeout)
            self.connections_opened += 1
        return self.conn

    def query(self, sql: str, max_rows: int | None = None) -> Outcome:
        started = time.monotonic()
        body = tool_call_body(sql, max_rows=max_rows)
        try:
            conn = self._connection()
            conn.request("POST", "/mcp", body, mcp_headers(self.server))
            resp = conn.getresponse()
            data = resp.read()
            if resp.will_close:
                self.close()
            return classify(resp.status, data, started)
        except Exception as exc:  # noqa: BLE001 - classified, reported by the caller
            self.close()
            return Outcome("exception", repr(exc), started, time.monotonic())

    def get(self, path: str) -> tuple[int, bytes]:
        conn = self._connection()
        conn.request("GET", path)
        resp = conn.getresponse()
        data = resp.read()
        if resp.will_close:
            self.close()
        return resp.status, data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ── raw sockets ────────────────────────────────────────────────────────────────

@dataclass
class RawResponse:
    status: int
    reason: str
    headers: dict[str, str]          # lower-cased names (last one wins)
    body: bytes
    raw_head: bytes = b""
    header_list: list[tuple[str, str]] = field(default_factory=list)

    def json(self):
        return json.loads(self.body)


def parse_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    lines = head.split(b"\r\n")
    version, status, *reason = lines[0].decode("latin-1").split(" ", 2)
    assert version.startswith("HTTP/1."), lines[0]
    items = []
    for line in lines[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        items.append((k.strip(), v.strip()))
    return int(status), (reason[0] if reason else ""), items


class ResponseReader:
    """Reads successive HTTP responses from one socket (keeps leftovers between them)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete HTTP response before the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout as exc:
            raise TimeoutError("no complete HTTP response before the deadline") from exc
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_response(self, deadline_s: float = 15.0, head_only: bool = False) -> RawResponse | None:
        """One response, or None if the server closed before sending (any part of) one."""
        deadline = time.monotonic() + deadline_s
        while b"\r\n\r\n" not in self.buf:
            if self.eof or not self._fill(deadline):
                if self.buf:
                    raise AssertionError(f"connection closed mid-head: {self.buf[:200]!r}")
                return None
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        status, reason, items = parse_head(head)
        headers = {k.lower(): v for k, v in items}
        if 100 <= status < 200:
            self.buf = rest
            return RawResponse(status, reason, headers, b"", head, items)
        length = 0 if head_only else int(headers.get("content-length", "0"))
        while len(rest) < length:
            if self.eof or not self._fill(deadline):
                raise AssertionError(f"connection closed mid-body ({len(rest)}/{length} bytes)")
            head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest[length:]
        return RawResponse(status, reason, headers, rest[:length], head, items)

    def read_to_eof(self, deadline_s: float = 15.0) -> bytes:
        deadline = time.monotonic() + deadline_s
        while not self.eof and self._fill(deadline):
            pass
        data, self.buf = self.buf, b""
        return data


def raw_request(method: str, path: str, headers: dict[str, str] | list[tuple[str, str]] | None = None,
                body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if not any(k.lower() == "host" for k, _ in items):
        items.insert(0, ("Host", "127.0.0.1"))
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
    return head.encode("latin-1") + body


def connect(port: int, timeout: float = 15.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


# ── Prometheus text format ─────────────────────────────────────────────────────

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(\{{(.*)\}})?\s+(\S+)(\s+-?\d+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def _parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        assert m, f"bad label set {{{text}}} at {pos}"
        labels[m.group(1)] = m.group(2)
        pos = m.end()
    return labels


def parse_prometheus(text: str) -> dict[str, dict]:
    """Parse exposition text; return {family: {"type": t, "help": h, "samples": [(name, labels, value)]}}.
    Asserts on anything malformed: unknown line shapes, bad values, samples without a TYPE."""
    families: dict[str, dict] = {}
    assert text.endswith("\n"), "exposition must end with a newline"
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                fam = families.setdefault(parts[2], {"type": None, "help": None, "samples": []})
                if parts[1] == "TYPE":
                    assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), line
                    assert fam["type"] is None, f"duplicate TYPE: {line}"
                    fam["type"] = parts[3]
                else:
                    fam["help"] = parts[3] if len(parts) > 3 else ""
            continue
        m = _SAMPLE.match(line)
        assert m, f"malformed sample line: {line!r}"
        name, _, labels, value = m.group(1), m.group(2), m.group(3), m.group(4)
        v = float(value)  # raises on garbage; accepts NaN/+Inf
        base = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in families:
                base = name[: -len(suffix)]
        assert base in families and families[base]["type"], f"sample {name} has no TYPE line before it"
        families[base]["samples"].append((name, _parse_labels(labels or ""), v))
    return families


def metric_sum(families: dict, name: str, **labels: str) -> float:
    """Sum of every sample called ``name`` whose labels include ``labels``."""
    total = 0.0
    for fam in families.values():
        for sample, sl, v in fam["samples"]:
            if sample == name and all(sl.get(k) == val for k, val in labels.items()):
                total += v
    return total


# ── process / limits ───────────────────────────────────────────────────────────

def raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError(f"no Threads for pid {pid}")
