"""The result view (web/result.html) in a real browser, hosted the way a web MCP Apps host hosts it.

Headless Chromium (tests/browser.py) opens a test host page (tests/apps/host.html) built on the
official host side of the MCP Apps SDK: AppBridge + PostMessageTransport from
@modelcontextprotocol/ext-apps and the official MCP client, pinned in tests/apps/package*.json,
installed with `npm ci` into the cache dir and bundled with esbuild. The host connects to the real
server (the fleet demo data, fixtures/demo.sql, behind the read-only role from role.sql) declaring the
extension, reads the view named by the tool's `_meta.ui.resourceUri`, loads it through a sandbox
proxy on another origin under the CSP built from the view's `_meta.ui.csp`, and hands it the tool
input and the real tool result. The tests then look at the DOM inside the view: cells equal the
values sent, the chart kind and its marks, the truncation banner, sorting, no script injection,
no external request, no CSP violation. Every case leaves a screenshot under
target/test-artifacts/screenshots/.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import urllib.parse
from decimal import Decimal
from pathlib import Path

import pytest

from browser import artifacts_dir, chromium, console_errors, screenshot
from conftest import REPO, wait_until

APPS = REPO / "tests" / "apps"
NPM_TIMEOUT_S = 900
RENDER_TIMEOUT_S = 60


# ── the official host SDK, installed and bundled for the browser (cached) ─────────────────────

def cache_root() -> Path:
    return Path(os.environ.get("ANALYTICS_MCP_CACHE") or Path.home() / ".cache" / "analytics-mcp") / "apps"


def digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def host_bundle() -> Path:
    """host.bundle.js: tests/apps/host.js with its npm dependencies, rebuilt when the pins or host.js change."""
    npm_dir = cache_root() / "npm"
    stamp = npm_dir / ".stamp"
    want = digest(APPS / "package.json", APPS / "package-lock.json")
    if not (stamp.exists() and stamp.read_text() == want and (npm_dir / "node_modules" / ".bin" / "esbuild").exists()):
        npm = shutil.which("npm")
        assert npm, "npm is needed to install the pinned MCP Apps host SDK (tests/apps/package.json)"
        shutil.rmtree(npm_dir, ignore_errors=True)
        npm_dir.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(APPS / name, npm_dir / name)
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=npm_dir,
                           capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        assert r.returncode == 0, f"npm ci failed:\n{r.stdout}\n{r.stderr}"
        stamp.write_text(want)
    bundle = npm_dir / "host.bundle.js"
    source_stamp = npm_dir / ".bundle-stamp"
    command = ["host.js", "--bundle", "--format=iife", "--platform=browser", "--target=chrome120", "--minify",
               "--outfile=host.bundle.js", "--log-level=warning"]
    want_bundle = digest(APPS / "host.js", APPS / "package-lock.json") + " ".join(command)
    if not (bundle.exists() and source_stamp.exists() and source_stamp.read_text() == want_bundle):
        shutil.copy(APPS / "host.js", npm_dir / "host.js")  # beside node_modules, so imports resolve
        r = subprocess.run([str(npm_dir / "node_modules" / ".bin" / "esbuild"), *command],
                           cwd=npm_dir, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"esbuild failed:\n{r.stdout}\n{r.stderr}"
        source_stamp.write_text(want_bundle)
    return bundle


# ── the fleet demo database and a server on it ──────────────────────────────────────────────

@pytest.fixture(scope="module")
def demo_server(pg, server_factory):
    """The real server on fixtures/demo.sql through role.sql's read-only role; a 1 MB result budget
    so 10,000 rows fit in one answer."""
    db = "apps_demo"
    pg.psql(f"CREATE DATABASE {db}", db="postgres")
    pg.psql_file(REPO / "fixtures" / "demo.sql", db=db)
    password = "apps-" + secrets.token_hex(16)
    r = subprocess.run([str(pg.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(pg.sockdir),
                        "-p", str(pg.port), "-U", pg.superuser, "-d", db, "-v", f"ro_pw={password}",
                        "-v", "schemas=fleet,tickets,reporting", "-v", "owners=fleet_owner",
                        "-v", "ro_role=apps_ro", "-f", str(REPO / "role.sql")],
                       capture_output=True, text=True, env=pg._pg_env())
    assert r.returncode == 0, r.stderr
    srv = server_factory(DATABASE_URL=f"postgresql://apps_ro:{password}@127.0.0.1:{pg.port}/{db}",
                         MCP_MAX_RESULT_BYTES="1000000")
    yield srv
    srv.stop()


# ── the host page, the sandbox proxy on another origin, and /mcp forwarded to the server ─────

def csp_from_metadata(csp: dict) -> str:
    """The CSP a host MUST build from `_meta.ui.csp` (MCP Apps 2026-01-26, "CSP Construction")."""
    def domains(key):
        return " ".join(d for d in (csp.get(key) or []) if isinstance(d, str) and not re.search(r"[;\s'\"]", d))
    res, conn, frames, base = (domains(k) for k in ("resourceDomains", "connectDomains", "frameDomains",
                                                     "baseUriDomains"))
    return "; ".join(part.strip() for part in [
        "default-src 'none'",
        f"script-src 'self' 'unsafe-inline' {res}", f"style-src 'self' 'unsafe-inline' {res}",
        f"connect-src 'self' {conn}", f"img-src 'self' data: {res}", f"font-src 'self' {res}",
        f"media-src 'self' data: {res}", f"frame-src {frames or chr(39) + 'none' + chr(39)}",
        "object-src 'none'", f"base-uri {base or chr(39) + 'self' + chr(39)}",
    ])


FORWARDED = ("content-type", "accept", "mcp-protocol-version", "mcp-method", "mcp-name", "mcp-session-id",
             "last-event-id")


class Pages:
    """Two loopback origins: the host (host.html, its bundle, /mcp) and the sandbox proxy. Every
    request either receives is recorded, so a test can see that the view asked for nothing."""

    def __init__(self, bundle: Path, server):
        self.bundle, self.server = bundle, server
        self.requests: list[tuple[str, str, str]] = []
        self.host = self._serve("host", self._host_get, self._host_post)
        self.sandbox = self._serve("sandbox", self._sandbox_get, None)
        self.host_url = f"http://127.0.0.1:{self.host.server_address[1]}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox.server_address[1]}/sandbox.html"

    def _serve(self, name, get, post):
        pages = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                pages.requests.append((name, "GET", self.path))
                get(self)

            def do_POST(self):
                pages.requests.append((name, "POST", self.path))
                if post is None:
                    return self.send_error(405)
                post(self)

            def do_DELETE(self):
                pages.requests.append((name, "DELETE", self.path))
                pages._forward(self) if post is not None else self.send_error(405)

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd

    @staticmethod
    def _send(handler, status, content_type, body: bytes, headers=()):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Cache-Control", "no-store")
        for k, v in headers:
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(body)

    def _host_get(self, h):
        path = urllib.parse.urlsplit(h.path).path
        if path == "/host.html":
            return self._send(h, 200, "text/html; charset=utf-8", (APPS / "host.html").read_bytes())
        if path == "/host.bundle.js":
            return self._send(h, 200, "text/javascript; charset=utf-8", self.bundle.read_bytes())
        if path == "/favicon.ico":
            return self._send(h, 200, "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"/>')
        if path == "/mcp":
            return self._forward(h)
        self._send(h, 404, "text/plain", b"not found")

    def _host_post(self, h):
        if urllib.parse.urlsplit(h.path).path != "/mcp":
            return self._send(h, 404, "text/plain", b"not found")
        self._forward(h)

    def _forward(self, h):
        """/mcp on the host's origin → the real server, with the bearer token (a real host keeps it
        server-side too; the server has no CORS, so a page cannot call it directly)."""
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        headers = {k: v for k, v in h.headers.items() if k.lower() in FORWARDED}
        headers.update(self.server.auth_headers())
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        try:
            conn.request(h.command, "/mcp", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            extra = [(k, v) for k, v in resp.getheaders() if k.lower() in ("mcp-session-id", "allow")]
            self._send(h, resp.status, resp.getheader("Content-Type") or "application/json", data, extra)
        finally:
            conn.close()

    def _sandbox_get(self, h):
        url = urllib.parse.urlsplit(h.path)
        if url.path != "/sandbox.html":
            return self._send(h, 404, "text/plain", b"not found")
        csp = json.loads(urllib.parse.parse_qs(url.query).get("csp", ["{}"])[0])
        self._send(h, 200, "text/html; charset=utf-8", (APPS / "sandbox.html").read_bytes(),
                   [("Content-Security-Policy", csp_from_metadata(csp))])

    def paths(self, origin=None) -> list[str]:
        return [urllib.parse.urlsplit(p).path for o, _, p in self.requests if origin in (None, o)]

    def close(self):
        for httpd in (self.host, self.sandbox):
            httpd.shutdown()
            httpd.server_close()


@pytest.fixture(scope="module")
def pages(host_bundle, demo_server):
    p = Pages(host_bundle, demo_server)
    yield p
    p.close()


@pytest.fixture(scope="module")
def driver():
    with chromium(window=(1100, 1000)) as d:
        d.set_script_timeout(RENDER_TIMEOUT_S)
        yield d


# The MCP client opens the optional GET stream for server messages; the server has none and answers
# 405, as the transport allows. Chromium logs that refusal; it is the only error a case may leave.
EXPECTED_CONSOLE = re.compile(r"/mcp - Failed to load resource: the server responded with a status of 405")


@pytest.fixture(autouse=True)
def clean_console(driver):
    """Every case ends with a console free of errors, CSP violations included."""
    driver.get_log("browser")  # drop what earlier cases left
    yield
    errors = [e for e in console_errors(driver) if not EXPECTED_CONSOLE.search(e)]
    assert errors == [], f"console errors: {errors}"


# ── driving the host ─────────────────────────────────────────────────────────────────────────

class Lexeme(str):
    """A JSON number exactly as written in the answer's text."""


def exact(text: str):
    return json.loads(text, parse_int=Lexeme, parse_float=Lexeme)


def render(driver, pages, tool="query", era="legacy", version=None, theme="light", **args):
    """Opens the host page and runs one tool call through the view; returns the host's report with
    `answer` (the tool result's JSON with numbers as lexemes)."""
    driver.switch_to.default_content()
    driver.get(pages.host_url + "/host.html")
    wait_until(lambda: driver.execute_script("return document.documentElement.dataset.hostReady"), 20,
               "the host bundle to load")
    outcome = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.testHost.run(arguments[0]).then(r => done({ok: r}), e => done({error: String(e && e.stack || e)}));",
        {"tool": tool, "args": args, "era": era, "version": version, "theme": theme,
         "sandboxUrl": pages.sandbox_url})
    assert "error" not in outcome, f"the host failed: {outcome['error']}\nconsole: {driver.get_log('browser')}"
    report = outcome["ok"]
    # the first text block is the answer's JSON, except for csv/markdown (the CSV or Markdown text)
    parsable = report["resultText"] and not report["isError"] and args.get("format") not in ("csv", "markdown")
    report["answer"] = exact(report["resultText"]) if parsable else None
    with inside_view(driver):
        wait_until(lambda: driver.execute_script(
            "return !/Waiting/.test(document.getElementById('count').textContent)"), 20, "the view to render")
    return report


@contextlib.contextmanager
def inside_view(driver):
    """Selenium inside the view: host page → sandbox proxy frame → the view's own frame."""
    from selenium.webdriver.common.by import By
    driver.switch_to.default_content()
    driver.switch_to.frame(driver.find_element(By.ID, "view"))
    driver.switch_to.frame(driver.find_element(By.TAG_NAME, "iframe"))
    try:
        yield
    finally:
        driver.switch_to.default_content()


def js(driver, script, *args):
    with inside_view(driver):
        return driver.execute_script(script, *args)


def click(driver, selector):
    """A real click (a trusted user gesture, which copying to the clipboard needs)."""
    from selenium.webdriver.common.by import By
    with inside_view(driver):
        driver.find_element(By.CSS_SELECTOR, selector).click()


TABLE_JS = """
const head = Array.from(document.querySelectorAll('#head th')).slice(1).map(th => ({
  name: th.querySelector('.name').textContent, type: th.querySelector('.type').textContent,
  sort: th.getAttribute('aria-sort')}));
const rows = Array.from(document.querySelectorAll('#body tr:not(.spacer)')).map(tr => ({
  row: Number(tr.dataset.row),
  cells: Array.from(tr.cells).slice(1).map(td => ({text: td.textContent, isNull: td.hasAttribute('data-null'),
     align: getComputedStyle(td).textAlign}))}));
return {head, rows, count: document.getElementById('count').textContent,
        panel: document.getElementById('table-panel').hidden ? 'chart' : 'table'};
"""


def table(driver):
    return js(driver, TABLE_JS)


def show_table(driver):
    if js(driver, "return !document.getElementById('switch').hidden"):
        click(driver, "#show-table")
    assert table(driver)["panel"] == "table"


def expected_text(value) -> str | None:
    """What a cell shows: None for NULL, the exact text otherwise (composites checked as JSON)."""
    if value is None:
        return None
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def assert_cells_equal_answer(driver, answer, limit=None):
    """Every rendered row's cells are the answer's values, exactly."""
    t = table(driver)
    columns = answer["columns"]
    assert [(h["name"], h["type"]) for h in t["head"]] == [(c["name"], c["type"]) for c in columns]
    assert t["rows"], "no rows rendered"
    for shown in t["rows"][:limit]:
        sent = answer["rows"][shown["row"]]
        values = sent if isinstance(sent, list) else [sent[c["name"]] for c in columns]
        for cell, value, column in zip(shown["cells"], values, columns):
            if value is None:
                assert cell["isNull"] and cell["text"] == "NULL", (column, cell)
            elif isinstance(value, (dict, list)):
                assert not cell["isNull"] and exact(cell["text"]) == value, (column, cell, value)
            else:
                assert not cell["isNull"] and cell["text"] == expected_text(value), (column, cell, value)
            if isinstance(value, Lexeme):
                assert cell["align"] == "right", f"numbers are right-aligned ({column['name']})"
    return t


def chart(driver):
    return js(driver, """
      const svg = document.querySelector('#chart-panel svg');
      if (!svg || document.getElementById('chart-panel').hidden) return null;
      return {kind: svg.dataset.kind,
              lines: svg.querySelectorAll('path.series-line').length,
              points: svg.querySelectorAll('circle.point').length,
              dots: svg.querySelectorAll('circle.dot').length,
              bars: svg.querySelectorAll('rect.bar').length,
              series: Array.from(svg.querySelectorAll('g.series')).map(g => g.dataset.series),
              xLabel: svg.querySelector('.x-label')?.textContent, yLabel: svg.querySelector('.y-label')?.textContent,
              categories: Array.from(svg.querySelectorAll('g.y-axis text')).map(t => t.textContent),
              legend: Array.from(document.querySelectorAll('ul.legend li')).map(li => li.textContent),
              caption: document.querySelector('figcaption')?.textContent,
              note: document.querySelector('#chart-panel .note')?.textContent || ''};
    """)


def rows_of(answer):
    return [[row[c["name"]] for c in answer["columns"]] for row in answer["rows"]]


def shot(driver, name):
    driver.switch_to.default_content()
    return screenshot(driver, f"result-view-{name}")


# ── the cases ──────────────────────────────────────────────────────────────────────────────────

COST_BY_CENTRE_MONTH = ("SELECT month, cost_centre, cost FROM reporting.v_fuel_cost_by_cost_centre_month "
                        "ORDER BY month, cost_centre")


def test_monthly_cost_per_cost_centre_is_a_line_per_cost_centre(driver, pages):
    report = render(driver, pages, sql=COST_BY_CENTRE_MONTH)
    answer = report["answer"]
    centres = {row["cost_centre"] for row in answer["rows"]}
    assert 2 <= len(centres) <= 8, centres
    c = chart(driver)
    assert c["kind"] == "line"
    assert c["lines"] == len(centres) and sorted(c["series"]) == sorted(centres)
    assert c["points"] == len(answer["rows"])
    assert sorted(c["legend"]) == sorted(centres), "several series get a legend"
    assert (c["xLabel"], c["yLabel"]) == ("month", "cost")
    shot(driver, "line-cost-centre-month")
    readme_copy(driver)
    show_table(driver)
    t = assert_cells_equal_answer(driver, answer)
    assert t["count"].startswith(f"{len(answer['rows'])} rows")
    assert js(driver, "return document.getElementById('banner').hidden"), "not truncated: no banner"
    shot(driver, "line-cost-centre-month-table")


def readme_copy(driver):
    """The README's picture: just the view, as the host shows it (kept as an artefact; web/result-view.png
    is a copy of it)."""
    from selenium.webdriver.common.by import By
    driver.switch_to.default_content()
    driver.find_element(By.ID, "view").screenshot(str(artifacts_dir() / "result-view-readme.png"))


def test_monthly_total_is_one_line_without_legend(driver, pages):
    report = render(driver, pages, sql="SELECT month, sum(cost) AS fuel_cost FROM "
                                       "reporting.v_fuel_cost_by_cost_centre_month GROUP BY 1 ORDER BY 1")
    c = chart(driver)
    months = len(report["answer"]["rows"])
    assert (c["kind"], c["lines"], c["points"], c["legend"]) == ("line", 1, months, [])
    assert (c["xLabel"], c["yLabel"]) == ("month", "fuel_cost")
    shot(driver, "line-monthly-total")


def test_per_vehicle_km_is_a_sorted_top_20_bar_chart(driver, pages):
    report = render(driver, pages, sql="SELECT registration, sum(distance_km) AS km FROM reporting.v_daily_distance "
                                       "GROUP BY 1 ORDER BY 1")
    answer = report["answer"]
    assert len(answer["rows"]) > 20
    c = chart(driver)
    assert c["kind"] == "bar" and c["bars"] == 20
    ranked = sorted(answer["rows"], key=lambda r: Decimal(r["km"]), reverse=True)[:20]
    assert c["categories"] == ["registration"] + [r["registration"] for r in ranked] or \
        c["categories"] == [r["registration"] for r in ranked], c["categories"]
    assert f"Top 20 of {len(answer['rows'])}" in c["note"]
    assert c["xLabel"] == "km"
    shot(driver, "bar-top-20")


def test_per_cost_centre_aggregate_is_grouped_bars_with_a_legend(driver, pages):
    report = render(driver, pages, sql="SELECT * FROM reporting.fn_fuel_cost('2026-08-01', '2026-10-31')")
    answer = report["answer"]
    c = chart(driver)
    measures = ["purchases", "litres", "cost"]
    assert c["kind"] == "bar"
    assert c["series"] == measures and c["legend"] == measures
    assert c["bars"] == len(answer["rows"]) * len(measures)
    shot(driver, "bar-cost-centre")
    show_table(driver)
    assert_cells_equal_answer(driver, answer)


def test_two_numeric_columns_are_a_scatter(driver, pages):
    report = render(driver, pages, sql="SELECT distance_km, max_speed_kmh FROM fleet.trips ORDER BY trip_id LIMIT 300")
    c = chart(driver)
    assert (c["kind"], c["dots"], c["lines"]) == ("scatter", 300, 0)
    assert (c["xLabel"], c["yLabel"]) == ("distance_km", "max_speed_kmh")
    assert len(report["answer"]["rows"]) == 300
    shot(driver, "scatter")


def test_no_chart_when_the_shape_has_none(driver, pages):
    # text only (and identifiers are not measures): the table, and no chart switch
    render(driver, pages, sql="SELECT vehicle_id, registration, make_model FROM fleet.vehicles ORDER BY 1")
    assert chart(driver) is None
    assert js(driver, "return document.getElementById('switch').hidden")
    assert table(driver)["panel"] == "table"


def test_sample_table_of_a_wide_table(driver, pages):
    report = render(driver, pages, tool="sample_table", schema="fleet", table="trips", n=25)
    answer = report["answer"]
    assert len(answer["columns"]) >= 12
    show_table(driver)
    t = assert_cells_equal_answer(driver, answer)
    assert t["count"] == f"25 rows · {len(answer['columns'])} columns"
    assert {"trip_id": "int4", "started_at": "timestamptz", "distance_km": "numeric", "purpose": "text",
            "start_lat": "float8"}.items() <= {h["name"]: h["type"] for h in t["head"]}.items()
    geometry = js(driver, """
      const s = document.getElementById('scroller');
      return {scrollWidth: s.scrollWidth, clientWidth: s.clientWidth};""")
    assert geometry["scrollWidth"] > geometry["clientWidth"], "a wide table scrolls sideways inside the view"
    assert "a sample of the first 25 rows" in js(driver, "return document.getElementById('banner').textContent")
    # the table scrolls inside the view, which fits the host's 900 px limit: no second scrollbar
    wait_until(lambda: js(driver, "return document.documentElement.scrollHeight <= innerHeight"), 10,
               "the view to fit its frame")
    # copy SQL gives the statement sample_table ran
    click(driver, "#copy-sql")
    assert js(driver, "return document.getElementById('clipboard').value") == 'SELECT * FROM "fleet"."trips" LIMIT 25'
    shot(driver, "wide-sample-table")


def test_sticky_header_stays_while_rows_scroll(driver, pages):
    render(driver, pages, sql="SELECT day, registration, distance_km FROM reporting.v_daily_distance "
                              "ORDER BY day, registration", max_rows=400)
    show_table(driver)
    moved = js(driver, """
      const s = document.getElementById('scroller'), th = document.querySelector('#head th');
      s.scrollTop = 3000;
      return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r({
        header: th.getBoundingClientRect().top - s.getBoundingClientRect().top,
        firstRow: Number(document.querySelector('#body tr:not(.spacer)').dataset.row)}))));""")
    assert abs(moved["header"]) <= 2, "the header sticks to the top of the scrolled table"
    assert moved["firstRow"] > 50, "rows scrolled under it"
    shot(driver, "sticky-header")


def test_truncated_by_max_rows_says_so_prominently(driver, pages):
    report = render(driver, pages, sql="SELECT day, registration, distance_km FROM reporting.v_daily_distance "
                                       "ORDER BY day, registration", max_rows=50)
    assert report["answer"]["truncated"] is True and report["answer"]["truncated_reason"] == "max_rows"
    banner = js(driver, """const b = document.getElementById('banner');
      return {hidden: b.hidden, role: b.getAttribute('role'), text: b.textContent,
              top: b.getBoundingClientRect().top, height: b.getBoundingClientRect().height};""")
    assert not banner["hidden"] and banner["role"] == "alert"
    assert "Truncated (max_rows)" in banner["text"] and "first 50 rows" in banner["text"]
    assert banner["top"] < 200 and banner["height"] > 20, "above the data, impossible to miss"
    shot(driver, "truncated-max-rows")


def test_truncated_by_max_bytes_says_so(driver, pages):
    report = render(driver, pages, sql="SELECT g, repeat(md5(g::text), 8) AS padding FROM generate_series(1, 5000) g",
                    max_rows=5000)
    answer = report["answer"]
    assert answer["truncated"] is True and answer["truncated_reason"] == "max_bytes"
    text = js(driver, "return document.getElementById('banner').textContent")
    assert "Truncated (max_bytes)" in text and f"after {len(answer['rows']):,} rows" in text
    shot(driver, "truncated-max-bytes")


AWKWARD_SQL = """
SELECT * FROM (VALUES
  (1, 12345678901234567890.123456789012345678901234567890::numeric, 9223372036854775807::int8, 1e-7::float8,
   'café 🚀 שלום עולם'::text, '<script>window.__pwned = 1</script>'::text, NULL::text, '{"a": [1.50, null], "é": "ü"}'::jsonb,
   TIMESTAMPTZ '2024-02-29 12:34:56.789+00', true, 1),
  (2, 'NaN', -9223372036854775808, 'Infinity', '', '<img src=x onerror="window.__pwned = 2">', 'x', '[]',
   'infinity', false, 2),
  (3, -0.000000000000000000000000000001, 0, -1.5, 'line1
line2', '"><svg onload="window.__pwned = 3">', '', NULL, NULL, NULL, 3)
) AS t(id, big_numeric, int8_extreme, float8, unicode, html, maybe, doc, at, flag, "<img src=x onerror=window.__pwned=4>")
"""


def test_awkward_values_are_shown_exactly_and_never_run(driver, pages):
    report = render(driver, pages, sql=AWKWARD_SQL)
    answer = report["answer"]
    show_table(driver)
    t = assert_cells_equal_answer(driver, answer)
    cells = {c["name"]: [r["cells"][i] for r in t["rows"]] for i, c in enumerate(answer["columns"])}
    # exact: what PostgreSQL wrote, not what a float makes of it
    assert cells["big_numeric"][0]["text"] == "12345678901234567890.123456789012345678901234567890"
    assert cells["int8_extreme"][0]["text"] == "9223372036854775807"
    assert cells["int8_extreme"][1]["text"] == "-9223372036854775808"
    assert cells["big_numeric"][2]["text"] == "-0.000000000000000000000000000001"
    assert cells["float8"][0]["text"] == "1e-07"
    # NULL is not the empty string
    assert cells["maybe"][0]["isNull"] and not cells["maybe"][2]["isNull"] and cells["maybe"][2]["text"] == ""
    assert cells["unicode"][1]["text"] == "" and not cells["unicode"][1]["isNull"]
    assert cells["unicode"][0]["text"] == "café 🚀 שלום עולם"
    assert cells["html"][0]["text"] == "<script>window.__pwned = 1</script>"
    # nothing in a value became markup or ran, in the view, the sandbox or the host
    assert t["head"][-1]["name"] == "<img src=x onerror=window.__pwned=4>", "a column name is text too"
    dom = js(driver, """return {scripts: document.scripts.length, imgs: document.images.length,
      svgs: document.querySelectorAll('#body svg, #head svg').length, pwned: window.__pwned === undefined ? null : window.__pwned};""")
    assert dom == {"scripts": 1, "imgs": 0, "svgs": 0, "pwned": None}
    from selenium.webdriver.common.by import By
    driver.switch_to.frame(driver.find_element(By.ID, "view"))
    assert driver.execute_script("return window.__pwned === undefined")
    driver.switch_to.default_content()
    assert driver.execute_script("return window.__pwned === undefined")
    shot(driver, "awkward-values")


SORT_SQL = """
SELECT * FROM (VALUES ('a', 0.1000000000000000000001::numeric, 'Zebra'), ('b', 0.1, 'apple'), ('c', NULL, NULL),
  ('d', -5, 'Äpfel'), ('e', 100, ''), ('f', 'NaN', 'banana'), ('g', 0.1, 'Apple')) AS t(k, amount, word)
"""


def test_sorting_is_exact_stable_and_keeps_nulls_last(driver, pages):
    render(driver, pages, sql=SORT_SQL)
    show_table(driver)

    def order():
        return [r["cells"][0]["text"] for r in table(driver)["rows"]]

    assert order() == list("abcdefg")
    click(driver, "#head th:nth-child(3) button")
    # a float would tie 0.1000000000000000000001 with 0.1; NaN sorts above every number, as in PostgreSQL
    assert order() == ["d", "b", "g", "a", "e", "f", "c"]
    assert table(driver)["head"][1]["sort"] == "ascending"
    click(driver, "#head th:nth-child(3) button")
    assert order() == ["f", "e", "a", "b", "g", "d", "c"], "descending, NULLs still last"
    assert table(driver)["head"][1]["sort"] == "descending"
    click(driver, "#head th:nth-child(3) button")
    assert order() == list("abcdefg") and table(driver)["head"][1]["sort"] == "none"
    shot(driver, "sorted")


def test_keyboard_sorts_switches_and_scrolls(driver, pages):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    render(driver, pages, sql="SELECT registration, sum(distance_km) AS km FROM reporting.v_daily_distance GROUP BY 1")
    with inside_view(driver):
        switch = driver.find_element(By.ID, "show-table")
        switch.send_keys(Keys.ENTER)
        assert driver.find_element(By.ID, "show-table").get_attribute("aria-pressed") == "true"
        button = driver.find_element(By.CSS_SELECTOR, "#head th:nth-child(3) button")
        button.send_keys(Keys.SPACE)
        assert driver.find_element(By.CSS_SELECTOR, "#head th:nth-child(3)").get_attribute("aria-sort") == "ascending"
        # every control is reachable with Tab, in order, and shows where focus is
        focusable = driver.execute_script("""return Array.from(document.querySelectorAll(
          'button:not([disabled]), [tabindex="0"], summary')).filter(e => e.offsetParent !== null).map(e => e.id || e.textContent.trim().slice(0, 20));""")
        assert {"show-chart", "show-table", "copy-csv", "copy-sql", "scroller"} <= set(focusable)
        driver.find_element(By.ID, "scroller").send_keys(Keys.END)
        wait_until(lambda: driver.execute_script("return document.getElementById('scroller').scrollTop > 0"), 5,
                   "the table to scroll with the keyboard")
        ring = driver.execute_script("""const b = document.getElementById('copy-csv'); b.focus();
          return getComputedStyle(b, ':focus-visible').outlineStyle || getComputedStyle(b).outlineStyle;""")
        assert ring != "none"


def test_ten_thousand_rows_render_virtualised(driver, pages):
    report = render(driver, pages, sql="SELECT g AS n, md5(g::text) AS hash FROM generate_series(1, 10000) g",
                    max_rows=10000)
    answer = report["answer"]
    assert len(answer["rows"]) == 10000 and answer["truncated"] is False
    show_table(driver)
    t = table(driver)
    assert t["count"] == "10,000 rows · 2 columns"
    assert 10 <= len(t["rows"]) <= 120, f"only the rows in view are in the document, not {len(t['rows'])}"
    assert_cells_equal_answer(driver, answer)
    js(driver, "const s = document.getElementById('scroller'); s.scrollTop = s.scrollHeight;")
    wait_until(lambda: table(driver)["rows"][-1]["cells"][0]["text"] == "10000", 10, "the last row to scroll in")
    assert_cells_equal_answer(driver, answer)
    click(driver, "#head th:nth-child(2) button")
    click(driver, "#head th:nth-child(2) button")
    wait_until(lambda: table(driver)["rows"][0]["cells"][0]["text"] == "10000", 10, "descending sort")
    shot(driver, "ten-thousand-rows")


def csv_field(value) -> str:
    """A field as PostgreSQL's COPY … CSV writes it: NULL empty, the empty string quoted."""
    if value is None:
        return ""
    text = expected_text(value)
    if text == "" or re.search(r'[",\r\n]|^\s|\s$', text):
        return '"' + text.replace('"', '""') + '"'
    return text


def clipboard(driver) -> str:
    """What is really on the clipboard now, read by the host page (permission granted through CDP)."""
    driver.switch_to.default_content()
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.testHost.readClipboard().then(done, e => done('clipboard read failed: ' + e));")


def test_copy_as_csv_and_copy_sql_put_exact_text_on_the_clipboard(driver, pages):
    # every scalar kind (the jsonb column's text is checked as JSON in the awkward-values case)
    sql = f"SELECT id, big_numeric, int8_extreme, float8, unicode, html, maybe, at, flag FROM ({AWKWARD_SQL}) AS a"
    report = render(driver, pages, sql=sql)
    driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": pages.host_url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    answer = report["answer"]
    click(driver, "#copy-csv")
    wait_until(lambda: "Copied 3 rows as CSV" in js(driver, "return document.getElementById('status').textContent"),
               10, "the copy to be confirmed")
    header = ",".join(c["name"] for c in answer["columns"])
    body = [",".join(csv_field(v) for v in row) for row in rows_of(answer)]
    expected = "\n".join([header] + body) + "\n"
    # the platform's clipboard may store line ends as \r\n; the text is otherwise byte for byte
    assert clipboard(driver).replace("\r\n", "\n") == expected
    assert "12345678901234567890.123456789012345678901234567890,9223372036854775807,1e-07," in expected
    assert '</script>,,2024' in expected and expected.endswith(',"",,\n'), "NULL is empty, the empty string \"\""
    click(driver, "#copy-sql")
    wait_until(lambda: "Copied the SQL" in js(driver, "return document.getElementById('status').textContent"),
               10, "the SQL copy to be confirmed")
    assert clipboard(driver) == sql


def test_dark_and_light_host_themes(driver, pages):
    render(driver, pages, sql=COST_BY_CENTRE_MONTH, theme="dark")

    def colours():
        return js(driver, """const s = getComputedStyle(document.body);
          const axis = getComputedStyle(document.querySelector('svg.chart text'));
          return {bg: s.backgroundColor, fg: s.color, axis: axis.fill,
                  scheme: getComputedStyle(document.documentElement).colorScheme};""")

    def luminance(css):
        r, g, b = (int(x) / 255 for x in re.findall(r"\d+", css)[:3])
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    dark = colours()
    assert dark["bg"] == "rgb(26, 26, 25)", "the host's --color-background-primary is used"
    assert luminance(dark["bg"]) < 0.2 < 0.6 < luminance(dark["fg"])
    assert luminance(dark["axis"]) > 0.5, "axis text stays readable on dark"
    shot(driver, "theme-dark")
    driver.execute_script("window.testHost.setTheme('light')")
    wait_until(lambda: colours()["bg"] == "rgb(255, 255, 255)", 10, "host-context-changed to light")
    light = colours()
    assert luminance(light["fg"]) < 0.2 and luminance(light["axis"]) < 0.5
    shot(driver, "theme-light")


@pytest.mark.parametrize("version", ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"])
def test_every_protocol_revision_gets_the_view(driver, pages, version):
    era = "modern" if version == "2026-07-28" else "legacy"
    report = render(driver, pages, era=era, version=None if era == "modern" else version,
                    sql="SELECT 1 AS one, 'x' AS letter")
    assert report["protocolVersion"] == version
    assert report["serverCapabilities"]["extensions"] == {"io.modelcontextprotocol/ui": {}}
    assert report["toolMeta"]["ui"]["resourceUri"] == "ui://analytics-mcp/result"
    assert [r["uri"] for r in report["listedResources"]] == ["ui://analytics-mcp/result"]
    assert report["appVersion"] == {"name": "analytics-mcp result view", "version": "1.0.0"}
    assert table(driver)["count"] == "1 row · 2 columns"


def dumps_exact(value) -> str:
    """JSON text with every Lexeme written as the number it is (json.dumps would quote it)."""
    if isinstance(value, Lexeme):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + dumps_exact(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps_exact(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def send_result(driver, result):
    driver.switch_to.default_content()
    driver.execute_async_script("const done = arguments[arguments.length - 1];"
                                "window.testHost.sendResult(arguments[0]).then(() => done(null));", result)


def test_rows_as_arrays_and_provenance_fields_are_understood(driver, pages):
    # the `arrays` answer shape (columns once, each row a list) and provenance fields, which the
    # server may send: rows are read by column position, unknown fields are shown, not trusted
    report = render(driver, pages, sql=AWKWARD_SQL)
    answer = report["answer"]
    names = [c["name"] for c in answer["columns"]]
    reshaped = {"format": "arrays", "row_count": answer["row_count"], "truncated": False, "truncated_reason": None,
                "columns": answer["columns"], "rows": [[row[n] for n in names] for row in answer["rows"]],
                "read_at": "2026-11-01T08:00:00Z", "database": "apps_demo", "label": "fleet (demo)",
                "future_field": {"nested": [1, 2, 3]}}
    text = dumps_exact(reshaped)
    send_result(driver, {"content": [{"type": "text", "text": text}], "structuredContent": json.loads(text),
                         "isError": False})
    show_table(driver)
    assert_cells_equal_answer(driver, reshaped)
    assert table(driver)["rows"][0]["cells"][1]["text"] == "12345678901234567890.123456789012345678901234567890"
    prov = js(driver, "return document.getElementById('prov').textContent")
    assert "read at: 2026-11-01T08:00:00Z" in prov and "database: apps_demo" in prov and "label: fleet (demo)" in prov
    assert "format" not in prov
    shot(driver, "arrays-shape-provenance")


# Every value a CSV or Markdown cell must carry exactly: a 50-digit numeric, int8 extremes, NULL
# and the empty string, quotes, commas, line breaks, pipes, backslashes, a leading quote, jsonb
# with a long number inside, NaN, and a text that looks like a number.
FORMATS_SQL = """
SELECT * FROM (VALUES
  (1, 12345678901234567890123456789012345678901234567890::numeric, 9223372036854775807::int8, NULL::text,
   'say "hi", twice'::text, 'a|b \\ c'::text, '{"n": 123456789012345678901234567890.5}'::jsonb, 1.5::float8),
  (2, -0.00000000000000000000000000000000000000000000000001, -9223372036854775808, '', 'line1
line2', '|', '"a jsonb string"', NULL),
  (3, 'NaN', 0, '""', ',', '"leading quote', '[1, 2.50]', 'Infinity'),
  (4, 98765432109876543210987654321098765432109876543210, 1, '007', 'crlf\r\nend', '||', NULL, '-0')
) AS t(id, big, int8_extreme, maybe, quotes_commas, pipes, doc, f)
"""


@pytest.mark.parametrize("fmt", ["csv", "markdown"])
def test_csv_and_markdown_answers_are_shown_exactly(driver, pages, demo_server, fmt):
    """With format csv or markdown the answer's JSON block has no rows: the view reads each cell
    from the CSV or Markdown text (structuredContent, parsed by the host, only says what kind of
    value each cell is), so nothing is rounded and no note says it might be."""
    objects = exact(demo_server.call_tool("query", {"sql": FORMATS_SQL})["content"][0]["text"])
    report = render(driver, pages, sql=FORMATS_SQL, format=fmt)
    assert not report["isError"] and report["resultText"].startswith("id,big," if fmt == "csv" else "|id|big|")
    show_table(driver)
    t = assert_cells_equal_answer(driver, objects)
    assert len(t["rows"]) == 4
    assert js(driver, "return document.getElementById('note').hidden"), "exact: no rounding note"
    cells = {c["name"]: [r["cells"][i] for r in t["rows"]] for i, c in enumerate(objects["columns"])}
    assert [c["text"] for c in cells["big"]] == [
        "12345678901234567890123456789012345678901234567890", "-0.00000000000000000000000000000000000000000000000001",
        "NaN", "98765432109876543210987654321098765432109876543210"]
    assert [c["text"] for c in cells["int8_extreme"]] == ["9223372036854775807", "-9223372036854775808", "0", "1"]
    assert cells["maybe"][0]["isNull"] and not cells["maybe"][1]["isNull"] and cells["maybe"][1]["text"] == ""
    assert [c["text"] for c in cells["maybe"][2:]] == ['""', "007"]
    assert [c["text"] for c in cells["quotes_commas"]] == ['say "hi", twice', "line1\nline2", ",", "crlf\r\nend"]
    assert [c["text"] for c in cells["pipes"]] == ["a|b \\ c", "|", '"leading quote', "||"]
    assert cells["doc"][0]["text"] == '{"n": 123456789012345678901234567890.5}'
    assert cells["doc"][1]["text"] == "a jsonb string" and cells["doc"][3]["isNull"]
    assert [c["text"] for c in cells["f"]] == ["1.5", "NULL", "Infinity", "-0"]
    assert all(c["align"] == "right" for c in cells["big"] + cells["int8_extreme"])
    # sorting compares the exact numbers: 98765… above 12345…, NaN above every number, as in PostgreSQL
    click(driver, "#head th:nth-child(3) button")
    assert [r["cells"][0]["text"] for r in table(driver)["rows"]] == ["2", "1", "4", "3"]
    shot(driver, f"format-{fmt}")
    if fmt == "csv":
        driver.execute_cdp_cmd("Browser.grantPermissions", {
            "origin": pages.host_url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
        click(driver, "#copy-csv")
        wait_until(lambda: "Copied 4 rows as CSV" in js(driver, "return document.getElementById('status').textContent"),
                   10, "the copy to be confirmed")
        copied = clipboard(driver).replace("\r\n", "\n")
        assert "12345678901234567890123456789012345678901234567890,9223372036854775807,," in copied
        assert "98765432109876543210987654321098765432109876543210,1," in copied


FORMATS = ["objects", "arrays", "csv", "markdown"]

# Values that try to become markup or script in the view, the sandbox or the host, to break the
# Markdown table or the CSV (pipes, line breaks, quotes), to reorder text (RTL override, line
# separator), plus a repeated column name, exact numbers and NULL beside the empty string and the
# text 'NULL'. max_rows=3 cuts the fourth row: the truncation notice must say so in every format.
HOSTILE_SQL = """
SELECT * FROM (VALUES
  (1, '<script>window.__pwned = 1</script>', '<img src=x onerror="window.__pwned = 2">',
   12345678901234567890.123456789::numeric, 9223372036854775807::int8, NULL::text, '=HYPERLINK("https://example.com")'),
  (2, '| x | y |' || chr(10) || '|---|---|', '</textarea><svg onload="window.__pwned = 3">', 'NaN', -9223372036854775808,
   '', '"quoted", "twice"'),
  (3, '\u202eevil\u2028sep\tTAB', '"><iframe srcdoc="<script>parent.__pwned = 4</script>">', -0.1, 0, 'NULL', '\\|\\n'),
  (4, 'the row past max_rows', 'x', 1, 1, 'x', 'x')
) AS t(id, "<b>a</b>", "<b>a</b>", big, int8_extreme, maybe, spreadsheet)
"""


def nothing_ran(driver):
    """No value became an element or ran, in the view, the sandbox proxy or the host page."""
    from selenium.webdriver.common.by import By
    dom = js(driver, """return {scripts: document.scripts.length, imgs: document.images.length,
      frames: document.querySelectorAll('iframe').length, bold: document.querySelectorAll('b:not(.prov b)').length,
      svgs: document.querySelectorAll('#table svg').length, pwned: window.__pwned === undefined ? null : window.__pwned};""")
    assert dom == {"scripts": 1, "imgs": 0, "frames": 0, "bold": 0, "svgs": 0, "pwned": None}
    driver.switch_to.default_content()
    driver.switch_to.frame(driver.find_element(By.ID, "view"))
    assert driver.execute_script("return window.__pwned === undefined")
    driver.switch_to.default_content()
    assert driver.execute_script("return window.__pwned === undefined")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_shows_the_answer_exactly_with_truncation_and_provenance(driver, pages, demo_server, fmt):
    """Whatever `format` the model asked for, the view shows the same exact cells, says the answer
    was cut, and shows this answer's provenance; no hostile value runs or breaks the table."""
    truth = exact(demo_server.call_tool("query", {"sql": HOSTILE_SQL, "format": "arrays", "max_rows": 3})
                  ["content"][0]["text"])
    report = render(driver, pages, sql=HOSTILE_SQL, format=fmt, max_rows=3)
    assert not report["isError"]
    texts = report["resultTexts"]
    answer = exact(texts[0] if fmt in ("objects", "arrays") else texts[1])
    assert answer["truncated"] is True and answer["truncated_reason"] == "max_rows"
    show_table(driver)
    t = assert_cells_equal_answer(driver, truth)
    assert len(t["rows"]) == 3 and t["count"] == "3 rows · 7 columns"
    assert [h["name"] for h in t["head"]][1:3] == ["<b>a</b>", "<b>a</b>_2"], "a repeated name, as the server keys it"
    cells = [[c["text"] for c in r["cells"]] for r in t["rows"]]
    assert cells[0][3:5] == ["12345678901234567890.123456789", "9223372036854775807"]
    assert cells[1][1] == "| x | y |\n|---|---|" and cells[2][1] == "\u202eevil\u2028sep\tTAB"
    assert [r["cells"][5]["isNull"] for r in t["rows"]] == [True, False, False] and cells[1][5] == "" and cells[2][5] == "NULL"
    assert js(driver, "return document.getElementById('note').hidden"), "exact in every format: no rounding note"
    banner = js(driver, "const b = document.getElementById('banner'); return b.hidden ? null : b.textContent")
    assert banner and "Truncated (max_rows)" in banner and "first 3 rows" in banner
    prov = js(driver, "return document.getElementById('prov').textContent")
    provenance = answer["provenance"]
    assert f"database: {provenance['database']}" in prov and f"read at: {provenance['read_at']}" in prov
    assert f"db ms: {provenance['db_ms']}" in prov and "format" not in prov
    nothing_ran(driver)
    # one line per row: neither a line break, a pipe nor a long value makes a row taller
    heights = js(driver, "return Array.from(document.querySelectorAll('#body tr:not(.spacer)')).map(r => r.getBoundingClientRect().height)")
    assert all(27 <= h <= 30 for h in heights), heights
    shot(driver, f"hostile-{fmt}")


WIDE_COLUMNS = 300
WIDE_SQL = ("SELECT g AS id, " + ", ".join(f"'<img src=x onerror=\"window.__pwned = {i}\">' || g AS \"c{i} <script>\""
                                           for i in range(WIDE_COLUMNS))
            + ", repeat('W', 60000) || g AS unbroken, repeat('word ', 8000) AS words FROM generate_series(1, 4) g")


@pytest.mark.parametrize("fmt", FORMATS)
def test_many_columns_and_very_long_values_keep_the_layout(driver, pages, fmt):
    """302 columns of markup and values of 60,000 characters: the table scrolls inside the view,
    columns keep a bounded width, rows one line, the view fits its frame, every value is intact."""
    report = render(driver, pages, sql=WIDE_SQL, format=fmt)
    assert not report["isError"]
    show_table(driver)
    t = table(driver)
    assert t["count"] == f"4 rows · {WIDE_COLUMNS + 3} columns"
    layout = js(driver, """
      const s = document.getElementById('scroller'), d = document.documentElement;
      const tds = Array.from(document.querySelectorAll('#body tr:not(.spacer) td'));
      const ths = Array.from(document.querySelectorAll('#head th'));
      const last = document.querySelector('#body tr:not(.spacer)');
      return {docWide: d.scrollWidth - innerWidth, scrolls: s.scrollWidth > s.clientWidth,
              widest: Math.max(...tds.map(td => td.getBoundingClientRect().width)),
              widestHead: Math.max(...ths.map(th => th.getBoundingClientRect().width)),
              rowHeights: Array.from(document.querySelectorAll('#body tr:not(.spacer)')).map(r => r.getBoundingClientRect().height),
              headHeight: document.querySelector('#head').getBoundingClientRect().height,
              unbroken: last.cells[last.cells.length - 2].textContent,
              words: last.cells[last.cells.length - 1].textContent,
              first: last.cells[2].textContent};""")
    assert layout["docWide"] <= 0, "the view itself never scrolls sideways"
    assert layout["scrolls"], "the table scrolls sideways inside the view"
    assert layout["widest"] < 340 and layout["widestHead"] < 340, layout
    assert all(27 <= h <= 30 for h in layout["rowHeights"]) and layout["headHeight"] < 60, layout
    assert layout["unbroken"] == "W" * 60000 + "1" and layout["words"] == "word " * 8000
    assert layout["first"] == '<img src=x onerror="window.__pwned = 0">1'
    wait_until(lambda: js(driver, "return document.documentElement.scrollHeight <= innerHeight"), 10,
               "the view to fit its frame")
    nothing_ran(driver)
    shot(driver, f"wide-long-{fmt}")


@pytest.mark.parametrize("fmt", ["csv", "markdown"])
def test_sample_table_in_a_text_format_is_shown_exactly(driver, pages, demo_server, fmt):
    objects = exact(demo_server.call_tool("sample_table", {"schema": "fleet", "table": "trips", "n": 10})
                    ["content"][0]["text"])
    report = render(driver, pages, tool="sample_table", schema="fleet", table="trips", n=10, format=fmt)
    assert not report["isError"] and report["resultTexts"][0].startswith("trip_id," if fmt == "csv" else "|trip_id|")
    show_table(driver)
    assert_cells_equal_answer(driver, objects)
    assert js(driver, "return document.getElementById('note').hidden")
    assert "a sample of the first 10 rows" in js(driver, "return document.getElementById('banner').textContent")


def test_without_a_json_text_block_the_view_uses_structured_content_and_says_so(driver, pages):
    # e.g. an answer whose text block is CSV for the model: structuredContent is all the view has,
    # already parsed by the host, so it warns that long numbers may have been rounded
    render(driver, pages, sql="SELECT 1 AS n")
    structured = {"row_count": 2, "truncated": False, "truncated_reason": None,
                  "columns": [{"name": "k", "type": "text"}, {"name": "v", "type": "numeric"}],
                  "rows": [{"k": "a", "v": 1.5}, {"k": "b", "v": None}]}
    send_result(driver, {"content": [{"type": "text", "text": "k,v\na,1.5\nb,\n"}],
                         "structuredContent": structured, "isError": False})
    show_table(driver)
    t = table(driver)
    assert [[c["text"] for c in r["cells"]] for r in t["rows"]] == [["a", "1.5"], ["b", "NULL"]]
    note = js(driver, "const n = document.getElementById('note'); return n.hidden ? null : n.textContent")
    assert note and "rounded" in note
    # a csv answer whose text does not agree with structuredContent cell for cell (a host changed
    # one of them) is not trusted for digits either: structuredContent, and the note
    arrays = {**structured, "format": "csv", "rows": [["a", 1.5], ["b", None]]}
    for text in ["k,v\na,1.6\nb,\n", "k,v\na,1.5\n", "k,v\na,1.5\nb,\"\"\n", "k,w\na,1.5\nb,\n"]:
        send_result(driver, {"content": [{"type": "text", "text": text}], "structuredContent": arrays,
                             "isError": False})
        show_table(driver)
        assert [[c["text"] for c in r["cells"]] for r in table(driver)["rows"]] == [["a", "1.5"], ["b", "NULL"]]
        assert not js(driver, "return document.getElementById('note').hidden"), text


def test_a_cancelled_call_says_so(driver, pages):
    render(driver, pages, sql="SELECT 1 AS n")
    driver.execute_async_script("const done = arguments[arguments.length - 1];"
                                "window.testHost.cancel('the user stopped it').then(() => done(null));")
    wait_until(lambda: "the user stopped it" in js(driver, "return document.getElementById('error').textContent"),
               10, "the cancellation to show")


def test_a_failed_query_shows_the_error(driver, pages):
    report = render(driver, pages, sql="SELECT * FROM internal.secrets")
    assert report["isError"]
    box = js(driver, "const e = document.getElementById('error'); return {hidden: e.hidden, text: e.textContent};")
    assert not box["hidden"] and "permission denied" in box["text"] and "42501" in box["text"]
    shot(driver, "error")


def test_the_view_cannot_reach_out(driver, pages):
    render(driver, pages, sql="SELECT 1 AS one")
    driver.get_log("browser")
    before = len(pages.requests)
    port = pages.host.server_address[1]
    outcome = js(driver, """
      const url = 'http://127.0.0.1:' + arguments[0] + '/beacon';
      const img = new Image();
      const blocked = new Promise(r => { img.onerror = () => r('blocked'); img.onload = () => r('loaded'); });
      img.src = url + '?img';
      const fetched = fetch(url + '?fetch').then(() => 'fetched', () => 'refused');
      return Promise.all([fetched, blocked]).then(([f, i]) => ({fetch: f, img: i,
        resources: performance.getEntriesByType('resource').map(e => e.name)}));""", port)
    assert outcome["fetch"] == "refused" and outcome["img"] == "blocked"
    assert "/beacon" not in pages.paths()[before:], "the request never left the browser"
    violations = [e for e in console_errors(driver) if "Content Security Policy" in e]
    assert len(violations) >= 2, f"the refusals are the CSP's: {violations}"
    # and the view itself asked for nothing at all
    assert [r for r in outcome["resources"] if "/beacon" not in r] == []
    assert set(pages.paths("sandbox")) == {"/sandbox.html"}
    assert set(pages.paths("host")) <= {"/host.html", "/host.bundle.js", "/mcp", "/favicon.ico"}


def test_size_changes_reach_the_host_and_teardown_is_answered(driver, pages):
    render(driver, pages, sql=COST_BY_CENTRE_MONTH)
    wait_until(lambda: max(driver.execute_script("return window.testHost.sizes()") or [0]) > 200, 10,
               "ui/notifications/size-changed with the rendered height")
    height = driver.execute_script("return document.getElementById('view').getBoundingClientRect().height")
    assert height > 200, "the host sized its frame to the view"
    answer = driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.testHost.teardown().then(done, e => done(String(e)));")
    assert answer == {}
