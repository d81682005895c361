#!/usr/bin/env python3
"""Tiny header-injecting HTTP/1.1 reverse proxy for the interop tests (stdlib only).

The MCP conformance CLI cannot send an Authorization header, so this sits on
loopback in front of analytics-mcp and adds `Authorization: Bearer <token>` to
every request that does not already carry one. Everything else is forwarded
byte for byte: the request line, every header in its original order and case
(Host and Origin included, so the DNS-rebinding checks reach the server as the
client sent them), the body, and the whole response stream.

Usage: auth_proxy.py LISTEN_PORT UPSTREAM_PORT TOKEN [PORT_FILE]
Listens on 127.0.0.1:LISTEN_PORT (0 = pick a free port); writes the bound port
to PORT_FILE (atomically) once it is accepting connections.
"""
import os
import socket
import sys
import threading

MAX_HEAD = 64 * 1024


def read_head(sock, buf):
    """Return (head_bytes, rest) once buf holds a full request head, or (None, buf) on EOF."""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise ValueError("request head too large")
        chunk = sock.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk
    i = buf.index(b"\r\n\r\n") + 4
    return buf[:i], buf[i:]


def read_exact(sock, buf, n):
    """Return (first n bytes, rest), reading from sock as needed."""
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("client closed mid-body")
        buf += chunk
    return buf[:n], buf[n:]


def read_line(sock, buf):
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("client closed mid-chunk")
        buf += chunk
    i = buf.index(b"\r\n") + 2
    return buf[:i], buf[i:]


def pump_requests(client, upstream, auth_line):
    """client -> upstream: one request at a time, injecting the header."""
    buf = b""
    try:
        while True:
            head, buf = read_head(client, buf)
            if head is None:
                if buf:
                    upstream.sendall(buf)
                break
            lines = head[:-4].split(b"\r\n")
            names = [l.split(b":", 1)[0].strip().lower() for l in lines[1:]]
            if b"authorization" not in names:
                lines.insert(1, auth_line)
            upstream.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
            hdrs = {}
            for l in lines[1:]:
                if b":" in l:
                    k, v = l.split(b":", 1)
                    hdrs[k.strip().lower()] = v.strip()
            if b"chunked" in hdrs.get(b"transfer-encoding", b"").lower():
                while True:
                    line, buf = read_line(client, buf)
                    upstream.sendall(line)
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        # trailers until an empty line
                        while True:
                            line, buf = read_line(client, buf)
                            upstream.sendall(line)
                            if line == b"\r\n":
                                break
                        break
                    data, buf = read_exact(client, buf, size + 2)
                    upstream.sendall(data)
            else:
                n = int(hdrs.get(b"content-length", b"0") or b"0")
                if n:
                    data, buf = read_exact(client, buf, n)
                    upstream.sendall(data)
    except (OSError, ValueError, EOFError):
        pass
    finally:
        try:
            upstream.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def pump_responses(upstream, client):
    """upstream -> client: raw bytes."""
    try:
        while True:
            chunk = upstream.recv(65536)
            if not chunk:
                break
            client.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def handle(client, upstream_port, auth_line):
    try:
        upstream = socket.create_connection(("127.0.0.1", upstream_port))
    except OSError:
        client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        client.close()
        return
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t = threading.Thread(target=pump_responses, args=(upstream, client), daemon=True)
    t.start()
    pump_requests(client, upstream, auth_line)
    t.join()
    client.close()
    upstream.close()


def main():
    listen_port, upstream_port, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    port_file = sys.argv[4] if len(sys.argv) > 4 else None
    auth_line = b"Authorization: Bearer " + token.encode()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port))
    srv.listen(128)
    if port_file:
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(srv.getsockname()[1]))
        os.rename(tmp, port_file)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c, upstream_port, auth_line), daemon=True).start()


if __name__ == "__main__":
    main()
