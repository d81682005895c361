#!/usr/bin/env python3
"""Time from exec of the server to its first healthy GET /healthz (200), N times; print the median.

Usage: startup.py N BINARY   (environment: the server's, minus MCP_PORT, which is picked per start)
Polls in a tight loop (connect + GET, retried immediately on refusal) with a 10 s deadline.
Prints `STARTUP median_ms=… min_ms=… max_ms=… n=…` on stdout.
"""
import os
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def healthy(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def once(binary):
    port = free_port()
    env = dict(os.environ, MCP_PORT=str(port))
    t0 = time.perf_counter()
    p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = t0 + 10
        while True:
            if healthy(port):
                return (time.perf_counter() - t0) * 1000
            if p.poll() is not None:
                raise SystemExit(f"server exited with {p.returncode} before /healthz: {p.stderr.read().decode()[-2000:]}")
            if time.perf_counter() > deadline:
                raise SystemExit("server not healthy within 10 s")
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main():
    n, binary = int(sys.argv[1]), sys.argv[2]
    times = [once(binary) for _ in range(n)]
    print(f"STARTUP median_ms={statistics.median(times):.1f} min_ms={min(times):.1f} max_ms={max(times):.1f} n={n}")


if __name__ == "__main__":
    main()
