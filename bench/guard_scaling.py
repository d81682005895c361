#!/usr/bin/env python3
"""How the SQL guard's time grows with nesting depth: `analytics-mcp check-sql` on
SELECT f(f(…f(1)…)) at depth n and 8n (best of 3, the process start-up subtracted).
Linear growth gives about 8x; quadratic would give about 64x.

    python3 bench/guard_scaling.py BIN    → one line: "n=… small_ms=… large_ms=… ratio=…"
"""
import subprocess
import sys
import time


def seconds(binary: str, sql: str, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.monotonic()
        subprocess.run([binary, "check-sql", sql], capture_output=True, check=False)
        best = min(best, time.monotonic() - start)
    return best


def nested(n: int) -> str:
    return "SELECT " + "f(" * n + "1" + ")" * n


def main() -> None:
    binary = sys.argv[1]
    overhead = seconds(binary, "SELECT 1", runs=5)
    n = 500
    while seconds(binary, nested(n)) - overhead < 0.01 and n < 4000:  # until the guard's time shows
        n *= 2
    small = max(seconds(binary, nested(n)) - overhead, 1e-4)
    large = max(seconds(binary, nested(8 * n)) - overhead, 1e-4)
    print(f"n={n} small_ms={small * 1000:.2f} large_ms={large * 1000:.2f} ratio={large / small:.1f}")


if __name__ == "__main__":
    main()
