"""Issue 4: hostile HTTP straight at the binary. No single client, and no few hundred, may crash the
process, grow its memory without bound or stop it serving others.

One server for the whole module (default limits: 16 KiB head, 100 headers, 1 MiB body, 10 s head
timeout, MCP_MAX_CONNECTIONS=256). Every case is followed by a real tool call that must succeed, with
the process still alive; the last test bounds the server's resident memory after all of them.
Waits poll observable state (a socket becoming readable or closed, /proc) with a deadline.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time

import pytest

from conftest import wait_until
from helpers_net import (ResponseReader, connect, mcp_headers, raise_nofile, raw_request, rss_kib, thread_count,
                         tool_call_body)

raise_nofile(4096)  # before the module's server starts: it inherits the limit

RSS_BOUND_KIB = 100 * 1024
PING = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()


@pytest.fixture(scope="module")
def srv(server_factory):
    server = server_factory(MCP_MAX_RESULT_BYTES="1000000")  # big answers for the never-reading client
    assert server.query("SELECT 1 AS one")["rows"] == [{"one": 1}]  # warm: pool, role check
    server.rss_start_kib = rss_kib(server.proc.pid)
    server.threads_start = thread_count(server.proc.pid)
    yield server
    server.stop()


def still_serving(srv) -> None:
    """The process is alive and a real tool call on a fresh connection succeeds."""
    assert srv.proc.poll() is None, f"server died ({srv.proc.returncode}):\n{srv.stderr_text()[-3000:]}"
    assert srv.query("SELECT 1 AS one, count(*) AS n FROM fleet.vehicles")["rows"] == [{"one": 1, "n": 3}]


def exchange(srv, data: bytes, deadline_s: float = 10.0, sender_thread: bool = False):
    """Send ``data`` (from a background thread when it may not all be read), return the first response."""
    s = connect(srv.port)
    try:
        if sender_thread:
            def send():
                try:
                    s.sendall(data)
                except OSError:
                    pass  # the server answered and closed before reading it all: expected
            t = threading.Thread(target=send, daemon=True)
            t.start()
        else:
            s.sendall(data)
        try:
            return ResponseReader(s).read_response(deadline_s=deadline_s)
        except ConnectionResetError as exc:
            raise AssertionError("connection reset before a response arrived") from exc
    finally:
        s.close()


def auth(srv) -> dict[str, str]:
    return {"Content-Type": "application/json", **srv.auth_headers()}


# ── sizes ──────────────────────────────────────────────────────────────────────

def test_huge_content_length_with_a_short_body_is_413(srv):
    req = raw_request("POST", "/mcp", {**auth(srv), "Content-Length": "100000000000"}, b'{"jsonrpc":')
    r = exchange(srv, req, deadline_s=5)
    assert r is not None and r.status == 413, r
    assert r.headers.get("connection") == "close"
    still_serving(srv)


def test_one_mib_header_line_is_431(srv):
    req = raw_request("GET", "/healthz", {"X-Huge": "a" * (1024 * 1024)})
    r = exchange(srv, req, sender_thread=True)
    assert r is not None and r.status == 431, r
    still_serving(srv)


def test_ten_thousand_headers_is_431(srv):
    req = raw_request("GET", "/healthz", [(f"X-H{i}", "1") for i in range(10_000)])
    r = exchange(srv, req, sender_thread=True)
    assert r is not None and r.status == 431, r
    still_serving(srv)


def test_body_just_over_the_limit_is_413_and_at_the_limit_is_parsed(srv):
    over = raw_request("POST", "/mcp", {**auth(srv), "Content-Length": str(1024 * 1024 + 1)}, b"x" * 100)
    r = exchange(srv, over, deadline_s=5)
    assert r is not None and r.status == 413, r
    # exactly 1 MiB of (valid JSON) padding is read in full and answered
    body = PING[:-1] + b"," + b'"pad":"' + b"p" * (1024 * 1024 - len(PING) - 10) + b'"}'
    body = body + b" " * (1024 * 1024 - len(body))
    assert len(body) == 1024 * 1024
    r = exchange(srv, raw_request("POST", "/mcp", {**auth(srv), "Content-Length": str(len(body))}, body),
                 sender_thread=True)
    assert r is not None and r.status == 200, r
    still_serving(srv)


# ── slow and broken clients ───────────────────────────────────────────────────

def test_200_slowloris_connections_time_out_while_others_are_served(srv):
    n = 200
    head = raw_request("GET", "/healthz", {"X-Slow": "s" * 200})  # never completes within 10 s at 1 B/s
    socks = [connect(srv.port) for _ in range(n)]
    open_socks = set(socks)
    outcome: dict[socket.socket, bytes] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def trickle():
        i = 0
        while not stop.is_set() and i < len(head):
            with lock:
                live = list(open_socks)
            for s in live:
                try:
                    s.send(head[i:i + 1])
                except OSError:
                    pass  # the server gave up on it: the reader records how
            i += 1
            stop.wait(1.0)  # pacing: one byte a second per connection

    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    served_meanwhile = 0
    try:
        deadline = time.monotonic() + 18
        next_probe = 0.0
        while len(outcome) < n:  # until every slowloris connection got its answer or was closed
            assert time.monotonic() < deadline, f"{n - len(outcome)} slowloris connections neither answered nor closed"
            for key, _ in sel.select(timeout=0.2):
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                outcome[s] = outcome.get(s, b"") + data
                if not data or b"\r\n\r\n" in outcome[s]:
                    sel.unregister(s)
                    with lock:
                        open_socks.discard(s)
            if len(outcome) < n and time.monotonic() >= next_probe:
                still_serving(srv)  # real requests keep being answered meanwhile
                served_meanwhile += 1
                next_probe = time.monotonic() + 0.5
    finally:
        stop.set()
        t.join(timeout=5)
        sel.close()
        for s in socks:
            s.close()
    statuses = [int(v.split(b" ", 2)[1]) if v.startswith(b"HTTP/1.1 ") else None for v in outcome.values()]
    assert set(statuses) <= {408, None}, statuses  # 408, or simply closed
    assert statuses.count(408) >= n // 2, statuses
    assert served_meanwhile >= 10, served_meanwhile
    print(f"\nslowloris: {statuses.count(408)} got 408, {statuses.count(None)} closed; "
          f"{served_meanwhile} real calls served meanwhile")
    still_serving(srv)


def test_invalid_utf8_body_is_a_parse_error(srv):
    body = b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe\xc3("}'
    r = exchange(srv, raw_request("POST", "/mcp", {**auth(srv), "Content-Length": str(len(body))}, body))
    # the contract says 200; 400 (streamable HTTP: "cannot accept the input") is tolerated as in
    # test_http.py — the JSON-RPC envelope is what matters
    assert r is not None and r.status in (200, 400), r
    env = r.json()
    assert env["error"]["code"] == -32700 and env["id"] is None, env
    still_serving(srv)


@pytest.mark.parametrize("how", ["half-close", "close", "reset"])
def test_truncated_body_does_no_harm(srv, how):
    body = tool_call_body("SELECT 1")
    req = raw_request("POST", "/mcp", {**auth(srv), "Content-Length": str(len(body) + 500)}, body)
    s = connect(srv.port)
    s.sendall(req)
    if how == "half-close":
        s.shutdown(socket.SHUT_WR)
        data = ResponseReader(s).read_to_eof(deadline_s=10)  # the server closes without answering
        assert data == b"" or data.startswith(b"HTTP/1.1 4"), data[:200]
        s.close()
    elif how == "reset":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    else:
        s.close()
    still_serving(srv)


def test_pipelined_requests_get_responses_in_order(srv):
    a = json.dumps({"jsonrpc": "2.0", "id": "first", "method": "tools/call",
                    "params": {"name": "query", "arguments": {"sql": "SELECT 1 AS n"}}}).encode()
    b = json.dumps({"jsonrpc": "2.0", "id": "second", "method": "tools/call",
                    "params": {"name": "query", "arguments": {"sql": "SELECT 2 AS n"}}}).encode()
    c = json.dumps({"jsonrpc": "2.0", "id": "third", "method": "ping"}).encode()
    data = b"".join(raw_request("POST", "/mcp", mcp_headers(srv, len(x)), x) for x in (a, b, c))
    s = connect(srv.port)
    try:
        s.sendall(data)  # three requests in one send
        reader = ResponseReader(s)
        got = [reader.read_response() for _ in range(3)]
    finally:
        s.close()
    assert [r.status for r in got] == [200, 200, 200]
    envs = [r.json() for r in got]
    assert [e["id"] for e in envs] == ["first", "second", "third"]
    assert envs[0]["result"]["structuredContent"]["rows"] == [{"n": 1}]
    assert envs[1]["result"]["structuredContent"]["rows"] == [{"n": 2}]
    assert envs[2]["result"] == {}
    still_serving(srv)


def test_client_that_never_reads_does_not_stop_the_server(srv):
    threads_before = thread_count(srv.proc.pid)
    big = "SELECT n, repeat('x', 1000) AS pad FROM generate_series(1, 900) AS n"  # ~0.9 MB per answer
    body = tool_call_body(big, max_rows=1000)
    req = raw_request("POST", "/mcp", mcp_headers(srv, len(body)), body)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", srv.port))
    s.sendall(req * 30)  # 30 big answers requested, none read
    try:
        # the stuck connection's thread blocks on a full socket; everyone else is served
        for _ in range(5):
            still_serving(srv)
        r = srv.post("/mcp", body, headers={"MCP-Protocol-Version": "2025-11-25"})
        assert r.status == 200 and len(r.body) > 900_000, (r.status, len(r.body))
    finally:
        s.close()  # with unread data: the server's blocked write fails and its thread ends
    wait_until(lambda: thread_count(srv.proc.pid) <= threads_before, 15,
               "the stuck connection's thread to end once its client left")
    still_serving(srv)


# ── a crowd ────────────────────────────────────────────────────────────────────

def test_a_thousand_connections_at_once(srv):
    n = 1000
    raise_nofile(n + 200)
    req = raw_request("GET", "/healthz", {"Connection": "close"})
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", srv.port))
            except BlockingIOError:
                pass
            socks.append(s)
        sel = selectors.DefaultSelector()
        for s in socks:
            sel.register(s, selectors.EVENT_WRITE)
        bufs: dict[socket.socket, bytes] = {}
        done: dict[socket.socket, bytes] = {}

        def step():
            for key, events in sel.select(timeout=0.2):
                s = key.fileobj
                if events & selectors.EVENT_WRITE:
                    try:
                        s.send(req)
                    except OSError:
                        pass  # a rejected connection may be closed already: its 503 is still readable
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                bufs[s] = bufs.get(s, b"") + data
                if not data:
                    done[s] = bufs[s]
                    sel.unregister(s)
            return len(done) == n
        wait_until(step, 60, "every one of 1000 connections to be answered and closed", interval=0)
        sel.close()
    finally:
        for s in socks:
            s.close()
    statuses = []
    for data in done.values():
        assert data.startswith(b"HTTP/1.1 "), f"a connection closed without a response: {data[:100]!r}"
        statuses.append(int(data.split(b" ", 2)[1]))
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses.count(200) >= 256, (statuses.count(200), statuses.count(503))
    print(f"\n1000 at once: {statuses.count(200)} served, {statuses.count(503)} got 503")
    still_serving(srv)


# ── framing and protocol corners ──────────────────────────────────────────────

def test_chunked_body_is_411(srv):
    body = PING
    req = raw_request("POST", "/mcp", {**auth(srv), "Transfer-Encoding": "chunked"},
                      b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    r = exchange(srv, req)
    assert r is not None and r.status == 411, r
    still_serving(srv)


def test_content_length_and_transfer_encoding_together_is_refused(srv):
    req = raw_request("POST", "/mcp", {**auth(srv), "Content-Length": str(len(PING)),
                                       "Transfer-Encoding": "chunked"}, PING)
    r = exchange(srv, req)
    assert r is not None and r.status in (400, 411), r
    assert r.headers.get("connection") == "close"
    still_serving(srv)


def test_http_1_0_is_answered_and_closed(srv):
    s = connect(srv.port)
    try:
        s.sendall(raw_request("POST", "/mcp", {**auth(srv), "Content-Length": str(len(PING))}, PING,
                              version="HTTP/1.0"))
        reader = ResponseReader(s)
        r = reader.read_response()
        assert r is not None and r.status == 200, r
        assert r.json()["result"] == {}
        assert reader.read_to_eof(deadline_s=10) == b""  # and then the server closes
    finally:
        s.close()
    still_serving(srv)


def test_head_healthz_has_headers_and_no_body(srv):
    s = connect(srv.port)
    try:
        s.sendall(raw_request("HEAD", "/healthz"))
        reader = ResponseReader(s)
        r = reader.read_response(head_only=True)
        assert r is not None and r.status == 200, r
        assert r.headers.get("content-length") == str(len(b'{"ok":true}'))
        # no body bytes followed: the next response on the connection starts cleanly
        s.sendall(raw_request("GET", "/healthz"))
        r2 = reader.read_response()
        assert r2 is not None and r2.status == 200 and r2.body == b'{"ok":true}', r2
    finally:
        s.close()
    still_serving(srv)


def test_expect_100_continue_waiting_client(srv):
    """A curl-like client: send the head, wait for 100 Continue, then the body."""
    body = tool_call_body("SELECT 7 AS n")
    head = raw_request("POST", "/mcp", {**mcp_headers(srv, len(body)), "Expect": "100-continue"})
    s = connect(srv.port)
    try:
        s.sendall(head)
        reader = ResponseReader(s)
        interim = reader.read_response(deadline_s=5)
        assert interim is not None and interim.status == 100, interim
        s.sendall(body)
        r = reader.read_response()
        assert r is not None and r.status == 200, r
        assert r.json()["result"]["structuredContent"]["rows"] == [{"n": 7}]
    finally:
        s.close()
    still_serving(srv)


def test_expect_100_continue_impatient_client(srv):
    """curl sends the body anyway if 100 Continue is slow: head and body in one go still work."""
    body = tool_call_body("SELECT 8 AS n")
    s = connect(srv.port)
    try:
        s.sendall(raw_request("POST", "/mcp", {**mcp_headers(srv, len(body)), "Expect": "100-continue"}, body))
        reader = ResponseReader(s)
        r = reader.read_response()
        if r is not None and r.status == 100:
            r = reader.read_response()
        assert r is not None and r.status == 200, r
        assert r.json()["result"]["structuredContent"]["rows"] == [{"n": 8}]
    finally:
        s.close()
    still_serving(srv)


def test_expect_100_continue_with_oversized_body_gets_the_final_status(srv):
    s = connect(srv.port)
    try:
        s.sendall(raw_request("POST", "/mcp", {**auth(srv), "Content-Length": str(50 * 1024 * 1024),
                                               "Expect": "100-continue"}))
        r = ResponseReader(s).read_response(deadline_s=5)
        assert r is not None and r.status == 413, r  # no 100 Continue for a body we would refuse
    finally:
        s.close()
    still_serving(srv)


# ── last: memory stayed bounded through everything above ──────────────────────

def test_memory_stays_bounded_after_the_hostile_cases(srv):
    still_serving(srv)
    rss = rss_kib(srv.proc.pid)
    print(f"\nserver RSS: {srv.rss_start_kib} KiB at start, {rss} KiB after the hostile cases")
    assert rss < RSS_BOUND_KIB, f"server RSS {rss} KiB (started at {srv.rss_start_kib} KiB)"
    wait_until(lambda: thread_count(srv.proc.pid) <= srv.threads_start + 8, 30,
               "connection threads to wind down after the crowd")
