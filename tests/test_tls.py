"""TLS to PostgreSQL with libpq's semantics, against a real PostgreSQL with ``ssl = on``.

One extra cluster for the whole module, reconfigured (server certificate, pg_hba.conf) with a
reload rather than restarted. Certificates are made at test time with the ``openssl`` CLI: a
test CA, a server certificate for localhost/127.0.0.1, one for another host name, an expired
one, a self-signed one, a client certificate (and one from a CA the server does not trust).
Every case checks what an operator sees: the start-up log line, /readyz, the tool error.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import (DB_NAME, Postgres, _pg_bindir, _unprivileged_user, free_port, run_binary,
                      wait_until)

RO = "mcp_ro"
CERT_ROLE = "mcp_cert"

# ── certificates ───────────────────────────────────────────────────────────────


def openssl(cwd: Path, *args: str) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}"


def new_key(cwd: Path, name: str) -> None:
    openssl(cwd, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key")


def new_ca(cwd: Path, name: str, cn: str) -> None:
    new_key(cwd, name)
    openssl(cwd, "req", "-x509", "-new", "-key", f"{name}.key", "-subj", f"/O=analytics-mcp tests/CN={cn}",
            "-days", "3650", "-out", f"{name}.crt",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def new_leaf(cwd: Path, name: str, cn: str, ca: str, san: str | None, usage: str,
             dates: tuple[str, str] | None = None) -> None:
    new_key(cwd, name)
    openssl(cwd, "req", "-new", "-key", f"{name}.key", "-subj", f"/CN={cn}", "-out", f"{name}.csr")
    ext = cwd / f"{name}.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   f"extendedKeyUsage={usage}\n" + (f"subjectAltName={san}\n" if san else ""))
    if dates is None:
        openssl(cwd, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-days", "825", "-sha256", "-extfile", ext.name, "-out", f"{name}.crt")
        return
    # openssl 3.0's x509 has no -not_before: `openssl ca` sets both dates
    (cwd / "index.txt").write_text("")
    (cwd / "serial").write_text(secrets.token_hex(8) + "\n")
    (cwd / "ca.cnf").write_text(
        "[ca]\ndefault_ca=test\n[test]\ndir=.\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\n"
        "default_md=sha256\npolicy=anything\nunique_subject=no\n[anything]\ncommonName=supplied\n")
    openssl(cwd, "ca", "-batch", "-config", "ca.cnf", "-cert", f"{ca}.crt", "-keyfile", f"{ca}.key",
            "-in", f"{name}.csr", "-out", f"{name}.crt", "-startdate", dates[0], "-enddate", dates[1],
            "-extfile", ext.name, "-notext")


def make_certificates(cwd: Path) -> None:
    new_ca(cwd, "ca", "analytics-mcp Test CA")
    new_ca(cwd, "other-ca", "Some Other CA")
    localhost = "DNS:localhost,IP:127.0.0.1"
    new_leaf(cwd, "server", "localhost", "ca", localhost, "serverAuth")
    new_leaf(cwd, "server-other", "db.example.com", "ca", "DNS:db.example.com,DNS:replica.example.com", "serverAuth")
    new_leaf(cwd, "server-expired", "localhost", "ca", localhost, "serverAuth",
             dates=("20200101000000Z", "20200201000000Z"))
    new_key(cwd, "server-self")
    openssl(cwd, "req", "-x509", "-new", "-key", "server-self.key", "-subj", "/CN=localhost", "-days", "365",
            "-addext", f"subjectAltName={localhost}", "-out", "server-self.crt")
    new_leaf(cwd, "client", CERT_ROLE, "ca", None, "clientAuth")
    new_leaf(cwd, "client-other", CERT_ROLE, "other-ca", None, "clientAuth")
    for key in cwd.glob("*.key"):
        key.chmod(0o600)


# ── the TLS cluster ────────────────────────────────────────────────────────────

HBA_TLS_ONLY = f"""
local all all trust
hostssl {DB_NAME} {CERT_ROLE} 127.0.0.1/32 cert
hostssl all all 127.0.0.1/32 scram-sha-256
"""
HBA_BOTH = HBA_TLS_ONLY + "hostnossl all all 127.0.0.1/32 scram-sha-256\n"


@dataclass
class TlsCluster:
    pg: Postgres
    certs: Path
    generation: int = 0

    def ca(self, name: str = "ca") -> str:
        return str(self.certs / f"{name}.crt")

    def dsn(self, host: str = "localhost", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{RO}:{self.pg.ro_password}@{host}:{self.pg.port}/{DB_NAME}" + (f"?{query}" if query else "")

    def reconfigure(self, server_cert: str = "server", hba: str = HBA_TLS_ONLY) -> None:
        """Switch the server certificate and pg_hba.conf with a reload; wait until it took."""
        (self.pg.datadir / "pg_hba.conf").write_text(hba)
        self.generation += 1
        (self.pg.datadir / "tls_test.conf").write_text(
            f"ssl = on\nssl_ca_file = '{self.certs}/ca.crt'\n"
            f"ssl_cert_file = '{self.certs}/{server_cert}.crt'\nssl_key_file = '{self.certs}/{server_cert}.key'\n"
            f"mcp_test.generation = '{self.generation}'\n")
        self.pg.psql("SELECT pg_reload_conf()", db="postgres")
        wait_until(lambda: self.pg.psql("SHOW mcp_test.generation", db="postgres") == str(self.generation),
                   10, "PostgreSQL to reload its configuration")


@pytest.fixture(scope="module")
def tls():
    os_user = _unprivileged_user()
    root = Path(tempfile.mkdtemp(prefix="amcp-tls-", dir="/tmp" if os_user is not None else None))
    pg = Postgres(bindir=_pg_bindir(), root=root, port=free_port(), ro_password="ro-" + secrets.token_hex(12),
                  os_user=os_user)
    certs = root / "certs"
    certs.mkdir()
    make_certificates(certs)
    if os_user is not None:  # PostgreSQL insists on owning its keys
        for f in list(certs.glob("server*")) + [certs]:
            os.chown(f, os_user.pw_uid, os_user.pw_gid)
    certs.chmod(0o755)
    try:
        pg.init_and_start()
        pg.psql(f"CREATE DATABASE {DB_NAME}", db="postgres")
        pg.psql(f"CREATE ROLE {RO} LOGIN PASSWORD '{pg.ro_password}';"
                f"ALTER ROLE {RO} SET default_transaction_read_only = on;"
                f"CREATE ROLE {CERT_ROLE} LOGIN; GRANT CONNECT ON DATABASE {DB_NAME} TO {RO}, {CERT_ROLE};",
                db="postgres")
        with open(pg.datadir / "postgresql.conf", "a") as conf:
            conf.write("\ninclude_if_exists = 'tls_test.conf'\n")
        cluster = TlsCluster(pg=pg, certs=certs)
        cluster.reconfigure()
        yield cluster
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def connection_line(srv) -> str:
    """The start-up line saying what the first connection negotiated."""
    text = srv.wait_for_stderr(lambda t: "database connection:" in t or "not reachable at start-up" in t,
                               "the start-up connection line", deadline_s=20)
    return next(line for line in text.splitlines()
                if "database connection:" in line or "not reachable at start-up" in line)


def tls_gauge(srv) -> str:
    return next(line for line in srv.get("/metrics").text.splitlines() if line.startswith("mcp_db_tls{"))


def assert_refused_everywhere(srv, *needles: str, reason: str) -> str:
    """The refusal reaches the start-up log, /readyz (code for all, message with a token) and the tool."""
    line = connection_line(srv)
    assert "not reachable at start-up" in line, line
    r = srv.get("/readyz")
    assert r.status == 503 and r.json() == {"ok": False, "database": "down", "reason": reason}, r.text
    ready = srv.get("/readyz", headers=srv.auth_headers()).json()
    assert ready["reason"] == reason, ready
    tool = srv.tool_error("query", {"sql": "SELECT 1"})
    assert tool.startswith("database unavailable: "), tool
    for needle in needles:
        for where, text in (("start-up log", line), ("/readyz", ready["error"]), ("tool error", tool)):
            assert needle in text, f"{needle!r} missing from the {where}: {text}"
    return tool


# ── verification modes ─────────────────────────────────────────────────────────

def test_verify_full_succeeds_and_says_so(tls, start_server):
    tls.reconfigure()
    srv = start_server(DATABASE_URL=tls.dsn(sslmode="verify-full", sslrootcert=tls.ca()))
    line = connection_line(srv)
    assert "INFO" in line and "database connection: TLS 1.3, certificate verified (verify-full)" in line, line
    row = srv.query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")["rows"][0]
    assert row == {"ssl": True, "version": "TLSv1.3"}
    assert tls_gauge(srv) == 'mcp_db_tls{sslmode="verify-full"} 3'
    assert tls.pg.ro_password not in srv.stderr_text()


def test_verify_full_by_ip_address_and_keyword_dsn(tls, start_server):
    tls.reconfigure()
    dsn = (f"host=127.0.0.1 port={tls.pg.port} dbname={DB_NAME} user={RO} password='{tls.pg.ro_password}' "
           f"sslmode=verify-full sslrootcert='{tls.ca()}'")
    srv = start_server(DATABASE_URL=dsn)
    assert "certificate verified (verify-full)" in connection_line(srv)
    assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]


def test_libpq_environment_variables_fill_in_what_the_dsn_leaves_out(tls, start_server):
    tls.reconfigure()
    srv = start_server(DATABASE_URL=tls.dsn(), PGSSLMODE="verify-full", PGSSLROOTCERT=tls.ca())
    assert "certificate verified (verify-full)" in connection_line(srv)
    # the DSN wins over the environment
    srv = start_server(DATABASE_URL=tls.dsn(sslmode="require"), PGSSLMODE="verify-full", PGSSLROOTCERT=tls.ca())
    assert "certificate verified against the CA" in connection_line(srv)  # require + a root file = verify-ca


def test_wrong_host_name_is_refused_naming_both(tls, start_server):
    tls.reconfigure(server_cert="server-other")
    srv = start_server(DATABASE_URL=tls.dsn(sslmode="verify-full", sslrootcert=tls.ca()))
    assert_refused_everywhere(srv, "db.example.com, replica.example.com", "not for 'localhost'", "verify-full",
                              reason="tls_hostname_mismatch")
    # verify-ca checks the CA only: the same certificate is accepted
    srv = start_server(DATABASE_URL=tls.dsn(sslmode="verify-ca", sslrootcert=tls.ca()))
    line = connection_line(srv)
    assert "certificate verified against the CA, host name not checked (sslmode=verify-ca)" in line, line
    assert tls_gauge(srv) == 'mcp_db_tls{sslmode="verify-ca"} 2'


def test_untrusted_ca_is_refused_naming_the_issuer(tls, start_server):
    tls.reconfigure()
    srv = start_server(DATABASE_URL=tls.dsn(sslmode="verify-full", sslrootcert=tls.ca("other-ca")))
    assert_refused_everywhere(srv, "issued by 'O=analytics-mcp tests, CN=analytics-mcp Test CA'",
                              f"sslrootcert={tls.ca('other-ca')}", reason="tls_untrusted_certificate")


def test_expired_certificate_is_refused_with_its_dates(tls, start_server):
    tls.reconfigure(server_cert="server-expired")
    srv = start_server(DATABASE_URL=tls.dsn(sslmode="verify-full", sslrootcert=tls.ca()))
    assert_refused_everywhere(srv, "has expired", "valid from 2020-01-01 00:00:00 UTC until 2020-02-01 00:00:00 UTC",
                              reason="tls_certificate_expired")


def test_require_accepts_a_self_signed_server_and_warns(tls, start_server):
    tls.reconfigure(server_cert="server-self")
    srv = start_server(DATABASE_URL=tls.dsn(sslmode="require"))
    line = connection_line(srv)
    assert "WARN" in line and "encrypted, certificate NOT verified (sslmode=require)" in line, line
    assert srv.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")["rows"] == [{"ssl": True}]
    assert tls_gauge(srv) == 'mcp_db_tls{sslmode="require"} 1'
    # libpq: require with an sslrootcert file checks the CA, so the self-signed server is refused
    srv = start_server(DATABASE_URL=tls.dsn(sslmode="require", sslrootcert=tls.ca()))
    assert_refused_everywhere(srv, "is self-signed", reason="tls_untrusted_certificate")


def test_prefer_uses_tls_when_offered_and_plaintext_when_not(tls, pg, start_server):
    tls.reconfigure(hba=HBA_BOTH)
    srv = start_server(DATABASE_URL=tls.dsn())  # no sslmode: libpq's default, prefer
    line = connection_line(srv)
    assert "encrypted, certificate NOT verified (sslmode=prefer)" in line, line
    # the suite's main cluster has ssl = off: prefer falls back to plaintext
    srv = start_server(DATABASE_URL=pg.ro_dsn)
    line = connection_line(srv)
    assert "database connection: unencrypted (sslmode=prefer, local)" in line, line
    assert tls_gauge(srv) == 'mcp_db_tls{sslmode="prefer"} 0'
    # prefer with a root file that does not fit: libpq retries without TLS, and so do we
    srv = start_server(DATABASE_URL=tls.dsn(sslrootcert=tls.ca("other-ca")))
    assert "database connection: unencrypted (sslmode=prefer, local)" in connection_line(srv)


def test_require_against_a_server_without_tls_says_so(pg, start_server):
    srv = start_server(DATABASE_URL=pg.ro_dsn + "?sslmode=require")
    assert_refused_everywhere(srv, "the server does not accept TLS connections", "sslmode=require",
                              reason="tls_unavailable")


def test_disable_against_a_hostssl_only_server_explains_and_allow_gets_in(tls, start_server):
    tls.reconfigure(hba=HBA_TLS_ONLY)
    srv = start_server(DATABASE_URL=tls.dsn(sslmode="disable"))
    assert_refused_everywhere(srv, "no pg_hba.conf entry", "only over TLS", "sslmode=require or stronger",
                              reason="needs_tls")
    # allow: plaintext first, then TLS once the server refused it
    srv = start_server(DATABASE_URL=tls.dsn(sslmode="allow"))
    assert "encrypted, certificate NOT verified (sslmode=allow)" in connection_line(srv)
    assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]


# ── client certificates ────────────────────────────────────────────────────────

def cert_dsn(tls, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"sslmode": "verify-full", "sslrootcert": tls.ca(), **params}.items())
    return f"postgresql://{CERT_ROLE}@localhost:{tls.pg.port}/{DB_NAME}?{query}"


def test_client_certificate_authentication(tls, start_server, tmp_path):
    tls.reconfigure()
    srv = start_server(DATABASE_URL=cert_dsn(tls, sslcert=str(tls.certs / "client.crt"),
                                             sslkey=str(tls.certs / "client.key")))
    assert "certificate verified (verify-full)" in connection_line(srv)
    assert srv.query("SELECT current_user AS me")["rows"] == [{"me": CERT_ROLE}]
    # the same through libpq's variables
    srv = start_server(DATABASE_URL=cert_dsn(tls), PGSSLCERT=str(tls.certs / "client.crt"),
                       PGSSLKEY=str(tls.certs / "client.key"))
    assert srv.query("SELECT current_user AS me")["rows"] == [{"me": CERT_ROLE}]


def test_missing_client_certificate_is_refused_clearly(tls, start_server):
    tls.reconfigure()
    srv = start_server(DATABASE_URL=cert_dsn(tls))
    assert_refused_everywhere(srv, "requires a valid client certificate", "set sslcert and sslkey",
                              reason="client_certificate_missing")


def test_wrong_client_certificate_is_refused_clearly(tls, start_server):
    tls.reconfigure()
    srv = start_server(DATABASE_URL=cert_dsn(tls, sslcert=str(tls.certs / "client-other.crt"),
                                             sslkey=str(tls.certs / "client-other.key")))
    assert_refused_everywhere(srv, "the server refused our client certificate",
                              f"sslcert={tls.certs / 'client-other.crt'}", reason="client_certificate_refused")


def test_client_key_readable_by_others_is_refused_at_start_up(tls, tmp_path):
    key = tmp_path / "client.key"
    shutil.copy(tls.certs / "client.key", key)
    key.chmod(0o644)
    r = run_binary([], env={"DATABASE_URL": cert_dsn(tls, sslcert=str(tls.certs / "client.crt"), sslkey=str(key)),
                            "MCP_PORT": str(free_port())})
    assert r.returncode == 2, r.stderr
    assert "has group or world access" in r.stderr and str(key) in r.stderr, r.stderr


# ── channel binding, system roots, direct negotiation ─────────────────────────

def test_channel_binding_require_over_tls(tls, start_server):
    tls.reconfigure()
    # scram-sha-256 over hostssl: only SCRAM-SHA-256-PLUS satisfies channel_binding=require
    srv = start_server(DATABASE_URL=tls.dsn(sslmode="verify-full", sslrootcert=tls.ca(), channel_binding="require"))
    assert "certificate verified (verify-full)" in connection_line(srv)
    assert srv.query("SELECT 1 AS one")["rows"] == [{"one": 1}]


def test_channel_binding_require_is_refused_without_tls(pg, start_server):
    srv = start_server(DATABASE_URL=pg.ro_dsn + "?channel_binding=require")
    assert_refused_everywhere(srv, "channel_binding=require", "not encrypted", reason="channel_binding")
    r = run_binary([], env={"DATABASE_URL": pg.ro_dsn + "?sslmode=disable&channel_binding=require",
                            "MCP_PORT": str(free_port())})
    assert r.returncode == 2 and "needs TLS" in r.stderr, r.stderr


def test_sslrootcert_system_uses_the_trust_store(tls, start_server, tmp_path):
    tls.reconfigure()
    # a throwaway trust store holding only the test CA (as OpenSSL and rustls-native-certs read it)
    store = tmp_path / "trust.pem"
    shutil.copy(tls.certs / "ca.crt", store)
    srv = start_server(DATABASE_URL=tls.dsn(sslrootcert="system"), SSL_CERT_FILE=str(store))
    assert "certificate verified (verify-full)" in connection_line(srv)  # system implies verify-full
    # a store without our CA refuses the server, naming the store
    other = tmp_path / "other.pem"
    shutil.copy(tls.certs / "other-ca.crt", other)
    srv = start_server(DATABASE_URL=tls.dsn(sslrootcert="system"), SSL_CERT_FILE=str(other))
    assert_refused_everywhere(srv, "the system trust store", reason="tls_untrusted_certificate")
    # libpq refuses a weaker sslmode with the system store
    r = run_binary([], env={"DATABASE_URL": tls.dsn(sslrootcert="system", sslmode="require"),
                            "SSL_CERT_FILE": str(store), "MCP_PORT": str(free_port())})
    assert r.returncode == 2 and 'weak sslmode "require" may not be used with sslrootcert=system' in r.stderr, r.stderr


def test_verify_modes_without_a_root_certificate_are_refused_at_start_up(tls, start_server, tmp_path):
    tls.reconfigure()
    r = run_binary([], env={"DATABASE_URL": tls.dsn(sslmode="verify-full"), "HOME": str(tmp_path),
                            "MCP_PORT": str(free_port())})
    assert r.returncode == 2, r.stderr
    assert f"{tmp_path}/.postgresql/root.crt" in r.stderr and "sslrootcert=system" in r.stderr, r.stderr
    # libpq's default file is used when present
    (tmp_path / ".postgresql").mkdir()
    shutil.copy(tls.certs / "ca.crt", tmp_path / ".postgresql" / "root.crt")
    srv = start_server(DATABASE_URL=tls.dsn(sslmode="verify-full"), HOME=str(tmp_path))
    assert "certificate verified (verify-full)" in connection_line(srv)


@pytest.mark.parametrize("dsn_tail, needle", [
    ("sslmode=verify-everything", "use disable, allow, prefer, require, verify-ca or verify-full"),
    ("sslnegotiation=direct", 'weak sslmode "prefer" may not be used with sslnegotiation=direct'),
    ("sslpassword=x", "encrypted client keys are not supported"),
    ("sslcrl=/x.crl", "revocation lists are not supported"),
    ("sslrootcert=/nonexistent/ca.pem&sslmode=verify-full", "cannot read /nonexistent/ca.pem"),
    ("sslcert=/nonexistent/c.crt&sslkey=/nonexistent/c.key", "cannot read /nonexistent/c.crt"),
    ("gssencmode=require", "GSSAPI encryption is not supported"),
])
def test_bad_tls_settings_stop_start_up_naming_them(pg, dsn_tail, needle):
    r = run_binary([], env={"DATABASE_URL": pg.ro_dsn + "?" + dsn_tail, "MCP_PORT": str(free_port())})
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert pg.ro_password not in r.stderr


def test_sslnegotiation_direct_starts_with_a_tls_handshake_offering_alpn_postgresql(tls, start_server):
    """PostgreSQL 15 cannot speak direct TLS; a TLS listener with the server's certificate shows
    what the client sends: a ClientHello first (no SSLRequest), with ALPN "postgresql"."""
    seen: dict = {}
    listener = socket.create_server(("127.0.0.1", 0))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.certs / "server.crt", tls.certs / "server.key")
    context.set_alpn_protocols(["postgresql"])

    def serve_once():
        conn, _ = listener.accept()
        with conn:
            seen["first_byte"] = conn.recv(1, socket.MSG_PEEK)
            try:
                with context.wrap_socket(conn, server_side=True) as tls_conn:
                    seen["alpn"] = tls_conn.selected_alpn_protocol()
                    seen["startup"] = tls_conn.recv(200)
            except (ssl.SSLError, OSError) as exc:
                seen["error"] = repr(exc)

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    dsn = (f"postgresql://{RO}:pw@localhost:{port}/{DB_NAME}?sslmode=verify-full&sslrootcert={tls.ca()}"
           "&sslnegotiation=direct")
    srv = start_server(DATABASE_URL=dsn)
    thread.join(timeout=20)
    listener.close()
    assert seen.get("first_byte") == b"\x16", seen  # a TLS handshake record, not an SSLRequest
    assert seen.get("alpn") == "postgresql", seen
    assert RO.encode() in seen.get("startup", b""), seen  # the startup message came inside TLS
    srv.stop()


# ── cancel requests go over the same TLS settings ─────────────────────────────

def test_watchdog_cancel_works_over_tls(tls, start_server):
    tls.reconfigure(hba=HBA_TLS_ONLY)
    srv = start_server(DATABASE_URL=tls.dsn(sslmode="verify-full", sslrootcert=tls.ca()),
                       MCP_STATEMENT_TIMEOUT_MS="60000")
    tag = "tls_cancel_" + secrets.token_hex(4)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "query", "arguments": {"sql": f"SELECT pg_sleep(30), '{tag}' AS t"}}})
    token = srv.tokens[srv.caller]
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall((f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n"
                  f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    running = f"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%{tag}%' " \
              "AND query NOT LIKE '%pg_stat_activity%'"
    wait_until(lambda: tls.pg.psql(running, db=DB_NAME) == "1", 15, "the query to run")
    sock.close()  # the analyst gave up
    wait_until(lambda: tls.pg.psql(running, db=DB_NAME) == "0", 10, "the watchdog to cancel it over TLS")
    assert "cancelling a backend query" in srv.stderr_text()


def test_check_db_reports_what_was_negotiated_and_why_not(tls, pg):
    tls.reconfigure()
    r = run_binary(["check-db", "3"], env={"DATABASE_URL": tls.dsn(sslmode="verify-full", sslrootcert=tls.ca())})
    assert r.returncode == 0, r.stderr
    assert "TLS 1.3, certificate verified (verify-full); connect median" in r.stdout and "n=3" in r.stdout, r.stdout
    r = run_binary(["check-db"], env={"DATABASE_URL": tls.dsn(sslmode="verify-full", sslrootcert=tls.ca("other-ca"))})
    assert r.returncode == 1 and "reason: tls_untrusted_certificate" in r.stderr, r.stderr
    assert tls.pg.ro_password not in r.stdout + r.stderr
