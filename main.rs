//! analytics-mcp — a read-only MCP server that lets analysts query PostgreSQL from Claude.
//!
//! One binary, no async runtime of our own. A request flows top to bottom through this file:
//!
//!   config → HTTP → auth → JSON-RPC/MCP → tools → SQL guard → pool/database → logging → main
//!
//! Read-only is layered: the role's GRANTs (role.sql) are the boundary; every statement runs in a
//! `BEGIN READ ONLY` transaction that is always rolled back, through the extended protocol (one
//! statement per Parse); and the SQL guard refuses, with a clear message, what a read-only
//! transaction would not stop (session advisory locks, file access, dynamic SQL, …).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use once_cell::sync::Lazy;
use serde_json::{json, Map, Value};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const SERVER_NAME: &str = "analytics-mcp";

// ════════════════════════════════════════════════════════════════════════════════════════════
// Configuration
// Contract: everything is read once from the environment at start-up. An invalid value stops the
// process with one line naming the variable; nothing is guessed. Token files are the exception:
// they are re-read while running (see Auth) so tokens rotate without a restart.
// ════════════════════════════════════════════════════════════════════════════════════════════

/// Every environment variable the server reads, with its default, for `--help` and the README.
#[rustfmt::skip]
const ENV_VARS: &[(&str, &str, &str)] = &[
    ("DATABASE_URL", "required (or MCP_DATABASES)", "PostgreSQL URL or key=value DSN of the read-only role (libpq's sslmode etc.)"),
    ("MCP_DATABASES", "none", "several databases instead: name=DSN;name=DSN (the first is the default)"),
    ("MCP_DATABASES_FILE", "none", "several databases from a file: [name] sections with url, label and own limits"),
    ("MCP_DATABASE_PASSWORD_FILE", "none", "file holding the database password (trailing newline ignored)"),
    ("PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY, PGCHANNELBINDING", "DSN", "libpq's TLS settings when DATABASE_URL does not set them"),
    ("PGPASSFILE", "~/.pgpass", "libpq password file, used when no password is given otherwise"),
    ("MCP_AUTH_TOKENS", "none", "name:token,name:token (token may be sha256:<hex>)"),
    ("MCP_AUTH_TOKENS_FILE", "none", "file of name:token lines; re-read on SIGHUP and change"),
    ("MCP_HOST", "127.0.0.1", "address to bind"),
    ("MCP_PORT", "8892", "port to bind"),
    ("MCP_MAX_ROWS", "10000", "hard ceiling on rows one query returns"),
    ("MCP_MAX_RESULT_BYTES", "150000", "byte budget of one result's rows (fits claude.ai's ~150k characters)"),
    ("MCP_STATEMENT_TIMEOUT_MS", "30000", "statement_timeout of every query"),
    ("MCP_READABLE_SCHEMAS", "all with USAGE", "schemas the introspection tools expose"),
    ("MCP_POOL_MAX", "8", "most database connections open at once"),
    ("MCP_POOL_IDLE_S", "300", "close pooled connections idle longer than this"),
    ("MCP_POOL_WAIT_MS", "10000", "longest wait for a free connection before 'server busy'"),
    ("MCP_MAX_CONNECTIONS", "256", "most HTTP connections served at once (over: 503)"),
    ("MCP_MAX_BATCH", "20", "most messages in one JSON-RPC batch (2025-03-26); a larger one is refused whole"),
    ("MCP_MAX_INFLIGHT_PER_CALLER", "MCP_POOL_MAX/2, at least 1", "most database calls one analyst has running; more wait their turn"),
    ("MCP_RATE_PER_CALLER", "0 (off)", "tool calls per minute per analyst (token bucket); over it: a tool error with the retry time"),
    ("MCP_DNS_REBINDING_PROTECTION", "0", "1: require Host to be in MCP_ALLOWED_HOSTS"),
    ("MCP_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]", "Host values allowed (host or host:port)"),
    ("MCP_ALLOWED_ORIGINS", "loopback only", "extra browser Origins allowed"),
    ("MCP_ALLOW_PRIVILEGED_ROLE", "0", "1: serve even if the role can write (loud warning)"),
    ("MCP_SHUTDOWN_GRACE_S", "20", "on SIGTERM, how long in-flight requests may finish"),
    ("MCP_LOG_FORMAT", "text", "text or json (one object per line)"),
    ("MCP_SERVER_LABEL", "none", "names this deployment in every query answer and in serverInfo.title"),
    ("MCP_MAX_PLAN_COST", "off", "refuse queries whose estimated plan cost is above this (one EXPLAIN first)"),
    ("MCP_ANALYST_ROLES", "none", "name=role,… and/or a pattern like analyst_{name}: each analyst's own database role"),
    ("MCP_ANALYST_UNMAPPED", "refuse", "refuse: an analyst with no role gets an error; base: served as the login role"),
    ("MCP_AUDIT_LOG", "none", "also append a tamper-evident JSON line per tool call to this file"),
    ("MCP_AUDIT_KEY_FILE", "none", "HMAC key chaining MCP_AUDIT_LOG (>= 32 bytes; keep a copy off this host)"),
    ("MCP_AUDIT_FSYNC", "always", "always (fsync each line before answering) or interval (once a second)"),
    ("MCP_AUDIT_ON_FAILURE", "refuse", "refuse: a call whose audit line cannot be written fails; serve: answer, log it"),
    ("MCP_AUDIT_ROTATE_BYTES", "104857600", "rotate MCP_AUDIT_LOG to <file>.<last seq> past this size (0: never)"),
    ("MCP_AUDIT_MAX_SQL_BYTES", "65536", "SQL kept in full up to this size (sql_sha256 always covers all of it)"),
    ("MCP_OAUTH", "off", "OAuth for claude.ai/Desktop: off, token (sign in with the personal token) or oidc"),
    ("MCP_PUBLIC_URL", "required with OAuth", "public origin of this server, e.g. https://analytics.example.org"),
    ("MCP_OAUTH_KEY_FILE", "generated per process", "signing keys, one per line (first signs, all verify); re-read on change"),
    ("MCP_OAUTH_ACCESS_TTL_S", "3600", "access token lifetime (60..3600)"),
    ("MCP_OAUTH_REFRESH_TTL_S", "2592000", "how long one sign-in lasts through refreshes (0: no refresh tokens)"),
    ("MCP_OAUTH_CA_FILE", "system roots", "PEM CAs trusted besides the system store for outbound HTTPS (identity provider, client documents)"),
    ("MCP_OAUTH_CLIENT_IP_HEADER", "none", "header with the browser's address behind a proxy (X-Forwarded-For)"),
    ("MCP_OAUTH_ALLOW_PRIVATE_FETCH", "0", "1 (tests only): client documents may be on private/loopback addresses"),
    ("MCP_OAUTH_MAX_CODES", "10000", "redeemed codes remembered (60 s each); when full the oldest goes and older codes are refused"),
    ("MCP_OAUTH_MAX_SIGN_INS", "20000", "sign-ins whose refresh rotation is tracked; when full the oldest sign-ins end"),
    ("MCP_OAUTH_MAX_ADDRESSES", "10000", "addresses (IPv6: /64) the sign-in throttle counts; beyond, the rest share one allowance"),
    ("MCP_OAUTH_MAX_CLIENT_DOCUMENTS", "100", "Client ID Metadata Documents cached (5 min each)"),
    ("MCP_OIDC_ISSUER", "required for oidc", "identity provider's issuer URL (https)"),
    ("MCP_OIDC_CLIENT_ID", "required for oidc", "this server's client id at the identity provider"),
    ("MCP_OIDC_CLIENT_SECRET_FILE", "required for oidc", "file holding the client secret"),
    ("MCP_OIDC_ALLOWED_DOMAINS", "none", "e-mail domains allowed to sign in (Google's hd honoured)"),
    ("MCP_OIDC_ALLOWED_EMAILS", "none", "e-mail addresses allowed to sign in"),
    ("MCP_OIDC_ALLOWED_FILE", "none", "file of allowed addresses, @domains, !denied addresses; re-read on change"),
    ("MCP_OIDC_ANALYST_NAME", "email", "analyst name from the e-mail: email or local-part"),
    ("MCP_OIDC_PROVIDER_NAME", "issuer host", "what the sign-in button calls the identity provider"),
];

#[derive(Debug, Clone)]
struct Config {
    /// The default database's connection (the first of `databases`).
    database: DbSettings,
    /// Every database served, the default first (see Several databases).
    databases: Vec<DatabaseSpec>,
    /// The databases were named (MCP_DATABASES / MCP_DATABASES_FILE), not DATABASE_URL alone:
    /// answers, errors and metrics then name the database.
    named_databases: bool,
    /// MCP_MAX_INFLIGHT_PER_CALLER was set (rather than derived from the pool size).
    max_inflight_explicit: bool,
    host: String,
    port: u16,
    inline_tokens: Vec<Token>,
    tokens_file: Option<String>,
    max_rows: u64,
    max_result_bytes: u64,
    statement_timeout_ms: u64,
    readable_schemas: Option<Vec<String>>,
    pool_max: usize,
    pool_idle: Duration,
    pool_wait: Duration,
    max_connections: usize,
    max_batch: usize,
    max_inflight_per_caller: usize,
    /// Tool calls per minute per analyst; 0 = no rate limit.
    rate_per_caller: u64,
    dns_rebinding_protection: bool,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    allow_privileged_role: bool,
    shutdown_grace: Duration,
    audit: Option<AuditConfig>,
    analyst_roles: Option<AnalystRoles>,
    /// Names this deployment (say, "production replica") in answers and in serverInfo.
    server_label: Option<String>,
    /// Statements whose estimated plan cost is above this are refused before they run.
    max_plan_cost: Option<f64>,
    /// None when MCP_OAUTH=off: then nothing of the OAuth section is reachable.
    oauth: Option<OAuthConfig>,
}

/// A start-up error: which variable, and what is wrong with it.
#[derive(Debug)]
struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    fn from_env(env: EnvLookup) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let (databases, named_databases) = databases_from_env(&get)?;
        let database = databases[0].settings.clone();
        let inline_tokens = match get("MCP_AUTH_TOKENS") {
            Some(list) => parse_token_list(list.split(','))
                .map_err(|e| ConfigError(format!("MCP_AUTH_TOKENS: {e}")))?,
            None => Vec::new(),
        };
        let tokens_file = get("MCP_AUTH_TOKENS_FILE");
        if let Some(path) = &tokens_file {
            read_token_file(path).map_err(|e| ConfigError(format!("MCP_AUTH_TOKENS_FILE: {e}")))?;
        }
        let host = get("MCP_HOST").unwrap_or_else(|| "127.0.0.1".into());
        let readable_schemas = get("MCP_READABLE_SCHEMAS").map(|s| split_list(&s));
        let allowed_hosts = get("MCP_ALLOWED_HOSTS")
            .map(|s| split_list(&s))
            .unwrap_or_else(|| vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()]);
        let allowed_origins = get("MCP_ALLOWED_ORIGINS")
            .map(|s| split_list(&s))
            .unwrap_or_default();
        // Read (and applied) before the rest, by serve(); validated here with everything else.
        if let Some(format) = get("MCP_LOG_FORMAT").filter(|f| f != "text" && f != "json") {
            return Err(ConfigError(format!(
                "MCP_LOG_FORMAT must be text or json, not {format:?}"
            )));
        }
        let pool_max = parse_number(&get, "MCP_POOL_MAX", 8, 1, 1000)? as usize;
        let config = Config {
            database,
            databases,
            named_databases,
            max_inflight_explicit: get("MCP_MAX_INFLIGHT_PER_CALLER").is_some(),
            port: parse_number(&get, "MCP_PORT", 8892, 1, 65535)? as u16,
            inline_tokens,
            tokens_file,
            max_rows: parse_number(&get, "MCP_MAX_ROWS", 10_000, 1, 1_000_000)?,
            max_result_bytes: parse_number(
                &get,
                "MCP_MAX_RESULT_BYTES",
                150_000,
                1024,
                100_000_000,
            )?,
            statement_timeout_ms: parse_number(
                &get,
                "MCP_STATEMENT_TIMEOUT_MS",
                30_000,
                1,
                86_400_000,
            )?,
            readable_schemas,
            pool_max,
            pool_idle: Duration::from_secs(parse_number(&get, "MCP_POOL_IDLE_S", 300, 1, 86_400)?),
            pool_wait: Duration::from_millis(parse_number(
                &get,
                "MCP_POOL_WAIT_MS",
                10_000,
                1,
                600_000,
            )?),
            max_connections: parse_number(&get, "MCP_MAX_CONNECTIONS", 256, 1, 100_000)? as usize,
            max_batch: parse_number(&get, "MCP_MAX_BATCH", 20, 1, 1000)? as usize,
            max_inflight_per_caller: parse_number(
                &get,
                "MCP_MAX_INFLIGHT_PER_CALLER",
                (pool_max as u64 / 2).max(1),
                1,
                1000,
            )? as usize,
            rate_per_caller: parse_number(&get, "MCP_RATE_PER_CALLER", 0, 0, 1_000_000)?,
            dns_rebinding_protection: parse_flag(&get, "MCP_DNS_REBINDING_PROTECTION")?,
            allowed_hosts,
            allowed_origins,
            allow_privileged_role: parse_flag(&get, "MCP_ALLOW_PRIVILEGED_ROLE")?,
            shutdown_grace: Duration::from_secs(parse_number(
                &get,
                "MCP_SHUTDOWN_GRACE_S",
                20,
                0,
                3600,
            )?),
            audit: AuditConfig::from_env(&get)?,
            analyst_roles: AnalystRoles::from_env(&get)?,
            oauth: OAuthConfig::from_env(&get)?,
            host,
            server_label: parse_label(&get, "MCP_SERVER_LABEL")?,
            max_plan_cost: parse_positive_float(&get, "MCP_MAX_PLAN_COST")?,
        };
        let no_tokens = config.inline_tokens.is_empty() && config.tokens_file.is_none();
        if no_tokens
            && config
                .oauth
                .as_ref()
                .is_some_and(|o| o.mode == OAuthMode::Token)
        {
            return Err(ConfigError(
                "MCP_OAUTH=token signs analysts in with their personal tokens: set MCP_AUTH_TOKENS or MCP_AUTH_TOKENS_FILE \
                 (or use MCP_OAUTH=oidc)"
                    .into(),
            ));
        }
        if no_tokens && config.oauth.is_none() && !is_loopback_host(&config.host) {
            return Err(ConfigError(format!(
                "MCP_AUTH_TOKENS (or MCP_AUTH_TOKENS_FILE) is required when MCP_HOST={} is not a loopback address: \
                 refusing to serve the database to the network without authentication",
                config.host
            )));
        }
        Ok(config)
    }

    fn bind_address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

fn parse_number(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(raw) = get(name) else {
        return Ok(default);
    };
    match raw.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError(format!(
            "{name} must be a whole number from {min} to {max}, not {raw:?}"
        ))),
    }
}

/// A short human label: printable, at most 100 characters.
fn parse_label(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<String>, ConfigError> {
    let Some(label) = get(name) else {
        return Ok(None);
    };
    if label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(ConfigError(format!(
            "{name} must be at most 100 printable characters (no newlines or control characters)"
        )));
    }
    Ok(Some(label))
}

fn parse_positive_float(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<f64>, ConfigError> {
    let Some(raw) = get(name) else {
        return Ok(None);
    };
    match raw.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(Some(n)),
        _ => Err(ConfigError(format!(
            "{name} must be a positive number (a PostgreSQL plan cost such as 1000000), not {raw:?}"
        ))),
    }
}

fn parse_flag(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<bool, ConfigError> {
    match get(name).as_deref() {
        None | Some("0") | Some("false") | Some("no") | Some("off") => Ok(false),
        Some("1") | Some("true") | Some("yes") | Some("on") => Ok(true),
        Some(other) => Err(ConfigError(format!("{name} must be 0 or 1, not {other:?}"))),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    bare.parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

fn help_text() -> String {
    let mut out = format!(
        "{SERVER_NAME} {VERSION} — read-only MCP server for PostgreSQL (streamable HTTP)\n\n\
         USAGE:\n  {SERVER_NAME}                    serve MCP on http://MCP_HOST:MCP_PORT/mcp\n  \
         {SERVER_NAME} check-sql \"<sql>\"  print ALLOW or REJECT: <reason> (exit 0/1), no database needed\n  \
         {SERVER_NAME} check-sql -        the same for every line of stdin (one statement per line)\n  \
         {SERVER_NAME} healthcheck        probe /healthz of a running server (exit 0/1)\n  \
         {SERVER_NAME} check-db [N]       connect with DATABASE_URL (N times), print what was negotiated and the connect time (exit 0/1)\n  \
         {SERVER_NAME} verify-audit FILE…  check the MCP_AUDIT_LOG chain, oldest file first (exit 0/1)\n  \
         {SERVER_NAME} oauth-key          print a new random line for MCP_OAUTH_KEY_FILE\n  \
         {SERVER_NAME} --help | --version\n\nENVIRONMENT (default):\n"
    );
    for (name, default, what) in ENV_VARS {
        let _ = writeln!(out, "  {name:<30} {what} ({default})");
    }
    out.push_str(
        "\nSignals: SIGTERM/SIGINT drain and exit 0; SIGHUP re-reads MCP_AUTH_TOKENS_FILE.\n",
    );
    out
}

// ── Several databases ────────────────────────────────────────────────────────────────────────
// DATABASE_URL alone is one database, named after its dbname. MCP_DATABASES (`name=DSN;…`) or
// MCP_DATABASES_FILE (sections `[name]` with `url`, `label` and limits of its own) name several;
// the first is the default. Each entry is checked like DATABASE_URL, and serves with the
// server-wide configuration except what its section sets (Config::for_database).

/// One database as configured: its name (the tools' `database` argument), its label, its
/// connection, and the limits it sets for itself (None: the server-wide value).
#[derive(Debug, Clone)]
struct DatabaseSpec {
    name: String,
    label: String,
    settings: DbSettings,
    readable_schemas: Option<Vec<String>>,
    max_rows: Option<u64>,
    statement_timeout_ms: Option<u64>,
    pool_max: Option<usize>,
}

/// The keys a `[name]` section of MCP_DATABASES_FILE may set, besides `url`.
const DATABASE_FILE_KEYS: [&str; 6] = [
    "url",
    "label",
    "readable_schemas",
    "max_rows",
    "statement_timeout_ms",
    "pool_max",
];

fn valid_database_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The databases this server serves, in order (the first is the default), and whether they
/// were named (MCP_DATABASES / MCP_DATABASES_FILE) rather than DATABASE_URL alone.
fn databases_from_env(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<DatabaseSpec>, bool), ConfigError> {
    let url = get("DATABASE_URL");
    let (inline, file) = (get("MCP_DATABASES"), get("MCP_DATABASES_FILE"));
    let named = match (&url, &inline, &file) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ConfigError(
                "DATABASE_URL and MCP_DATABASES/MCP_DATABASES_FILE are both set: use DATABASE_URL for one database, MCP_DATABASES for several".into(),
            ))
        }
        (_, Some(_), Some(_)) => {
            return Err(ConfigError("MCP_DATABASES and MCP_DATABASES_FILE are both set: use one".into()))
        }
        (None, None, None) => {
            return Err(ConfigError(
                "DATABASE_URL is required (e.g. postgresql://analytics_ro:PASSWORD@127.0.0.1:5432/db), or MCP_DATABASES for several databases".into(),
            ))
        }
        (Some(dsn), None, None) => {
            let settings = DbSettings::from_env(dsn, get).map_err(|e| ConfigError(format!("DATABASE_URL: {e}")))?;
            let name = settings
                .base
                .get_dbname()
                .filter(|n| valid_database_name(n))
                .unwrap_or("default")
                .to_string();
            let spec = DatabaseSpec {
                label: name.clone(),
                name,
                settings,
                readable_schemas: None,
                max_rows: None,
                statement_timeout_ms: None,
                pool_max: None,
            };
            return Ok((vec![spec], false));
        }
        (None, Some(list), None) => parse_database_list(list, get)?,
        (None, None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("MCP_DATABASES_FILE: cannot read {path}: {e}")))?;
            parse_database_file(&text, path, get)?
        }
    };
    Ok((named, true))
}

/// `fleet=postgresql://…;finance=host=db2 dbname=finance user=ro` (a DSN may not hold `;`).
fn parse_database_list(
    list: &str,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<DatabaseSpec>, ConfigError> {
    let mut specs: Vec<DatabaseSpec> = Vec::new();
    for (index, entry) in list.split(';').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        let place = format!("MCP_DATABASES entry {}", index + 1);
        let (name, dsn) = entry
            .split_once('=')
            .map(|(n, d)| (n.trim(), d.trim()))
            .filter(|(n, d)| !n.is_empty() && !d.is_empty())
            .ok_or_else(|| ConfigError(format!("{place} is not name=DSN")))?;
        let mut values = BTreeMap::new();
        values.insert("url", dsn.to_string());
        specs.push(database_spec(name, &values, &place, get)?);
    }
    finish_database_list(specs, "MCP_DATABASES")
}

/// Sections `[name]`, each with `url = …` and optionally `label`, `readable_schemas`,
/// `max_rows`, `statement_timeout_ms`, `pool_max`; `#` starts a comment line.
fn parse_database_file(
    text: &str,
    path: &str,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<DatabaseSpec>, ConfigError> {
    let mut sections: Vec<(String, usize, BTreeMap<&str, String>)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = || format!("MCP_DATABASES_FILE {path} line {}", index + 1);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push((name.trim().to_string(), index + 1, BTreeMap::new()));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError(format!(
                "{}: expected [name] or key = value",
                at()
            )));
        };
        let key = key.trim();
        let Some(known) = DATABASE_FILE_KEYS.iter().find(|k| **k == key) else {
            return Err(ConfigError(format!(
                "{}: unknown key {key:?} (known: {})",
                at(),
                DATABASE_FILE_KEYS.join(", ")
            )));
        };
        let Some((_, _, values)) = sections.last_mut() else {
            return Err(ConfigError(format!(
                "{}: {key} before the first [name]",
                at()
            )));
        };
        values.insert(known, value.trim().to_string());
    }
    let specs = sections
        .iter()
        .map(|(name, line, values)| {
            database_spec(
                name,
                values,
                &format!("MCP_DATABASES_FILE {path} [{name}] (line {line})"),
                get,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    finish_database_list(specs, "MCP_DATABASES_FILE")
}

fn database_spec(
    name: &str,
    values: &BTreeMap<&str, String>,
    place: &str,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<DatabaseSpec, ConfigError> {
    let bad = |why: String| ConfigError(format!("{place}: {why}"));
    if !valid_database_name(name) {
        return Err(bad(format!(
            "database name {:?} may only use letters, digits, _ and - (at most 40)",
            excerpt(name, MAX_ECHO_CHARS)
        )));
    }
    let dsn = values
        .get("url")
        .ok_or_else(|| bad("needs url = <PostgreSQL URL or key=value DSN>".into()))?;
    let settings = DbSettings::from_env(dsn, get).map_err(bad)?;
    let label = values
        .get("label")
        .cloned()
        .unwrap_or_else(|| name.to_string());
    if label.is_empty() || label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(bad("label must be 1 to 100 printable characters".into()));
    }
    let lookup = |key: &str| values.get(key).cloned().filter(|v| !v.is_empty());
    let number = |key: &str, min: u64, max: u64| -> Result<Option<u64>, ConfigError> {
        let Some(raw) = lookup(key) else {
            return Ok(None);
        };
        match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(bad(format!(
                "{key} must be a whole number from {min} to {max}, not {raw:?}"
            ))),
        }
    };
    Ok(DatabaseSpec {
        name: name.to_string(),
        label,
        settings,
        readable_schemas: lookup("readable_schemas").map(|s| split_list(&s)),
        max_rows: number("max_rows", 1, 1_000_000)?,
        statement_timeout_ms: number("statement_timeout_ms", 1, 86_400_000)?,
        pool_max: number("pool_max", 1, 1000)?.map(|n| n as usize),
    })
}

fn finish_database_list(
    specs: Vec<DatabaseSpec>,
    variable: &str,
) -> Result<Vec<DatabaseSpec>, ConfigError> {
    if specs.is_empty() {
        return Err(ConfigError(format!("{variable} names no database")));
    }
    for (i, spec) in specs.iter().enumerate() {
        if specs[..i].iter().any(|other| other.name == spec.name) {
            return Err(ConfigError(format!(
                "{variable}: database {} is named twice",
                spec.name
            )));
        }
    }
    Ok(specs)
}

impl Config {
    /// What one database serves with: the server-wide configuration, with its own connection
    /// and whatever limits its entry sets.
    fn for_database(&self, spec: &DatabaseSpec) -> Config {
        let mut config = self.clone();
        config.database = spec.settings.clone();
        if let Some(schemas) = &spec.readable_schemas {
            config.readable_schemas = Some(schemas.clone());
        }
        config.max_rows = spec.max_rows.unwrap_or(config.max_rows);
        config.statement_timeout_ms = spec
            .statement_timeout_ms
            .unwrap_or(config.statement_timeout_ms);
        if let Some(pool_max) = spec.pool_max {
            config.pool_max = pool_max;
            config.max_inflight_per_caller = if self.max_inflight_explicit {
                config.max_inflight_per_caller.min(pool_max)
            } else {
                (pool_max / 2).max(1)
            };
        }
        config
    }
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// HTTP
// Contract: a small blocking HTTP/1.1 server on std::net (tiny_http 0.12 was measured unfit: a
// huge Content-Length aborts it, its pool loses wake-ups, it has no limits or timeouts). One
// accept loop; one thread per connection, capped by a counting semaphore; each connection serves
// its keep-alive requests one at a time. Every limit answers with a status and closes: head >
// 16 KiB or > 100 headers → 431, body > 1 MiB → 413, chunked bodies → 411, CL+TE → 400, a head
// not complete in 10 s → 408, a body not complete in 30 s → 408. Idle keep-alive: 60 s.
// ════════════════════════════════════════════════════════════════════════════════════════════

const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_BODY_BYTES: usize = 1024 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed request. Header names are lower-cased; the body is complete.
#[derive(Debug, Default)]
struct Request {
    method: String,
    path: String,
    /// The query string without its `?` ("" when there is none).
    query: String,
    /// The connection's peer address (the proxy's, behind one).
    peer: Option<IpAddr>,
    http10: bool,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client asked for the connection to stay open after this request.
    fn wants_keep_alive(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        let tokens = || connection.split(',').map(str::trim);
        if self.http10 {
            tokens().any(|t| t == "keep-alive")
        } else {
            !tokens().any(|t| t == "close")
        }
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Close the connection after this response (errors that leave the stream in doubt).
    close: bool,
}

impl Response {
    fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body,
            close: false,
        }
    }

    fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status, "application/json", body.into())
    }

    fn html(status: u16, body: String) -> Response {
        Response::new(status, "text/html; charset=utf-8", body.into_bytes())
    }

    /// A redirect (302 for GETs, 303 after a form POST, so the browser follows with a GET).
    fn redirect(status: u16, location: &str) -> Response {
        Response::empty(status).with_header("Location", location)
    }

    fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
        }
    }

    /// A JSON error body `{"error": "..."}` for failures outside JSON-RPC.
    fn error(status: u16, message: &str) -> Response {
        Response::json(status, json!({ "error": message }).to_string())
    }

    fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    /// Writes status line, headers and (unless `head_only`) the body, without copying the body:
    /// answers can be hundreds of kilobytes.
    fn write_to(
        &self,
        mut stream: &TcpStream,
        head_only: bool,
        keep_alive: bool,
    ) -> io::Result<()> {
        let head = self.head(keep_alive);
        let body: &[u8] = if head_only { &[] } else { &self.body };
        let mut parts = [io::IoSlice::new(&head), io::IoSlice::new(body)];
        let mut remaining = &mut parts[..];
        while remaining.iter().any(|part| !part.is_empty()) {
            match stream.write_vectored(remaining) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => io::IoSlice::advance_slices(&mut remaining, written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn head(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\n",
            self.status,
            reason_phrase(self.status)
        );
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if self.status != 204 && !(100..200).contains(&self.status) {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        out.extend_from_slice(b"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n");
        out.extend_from_slice(if keep_alive {
            b"Connection: keep-alive\r\n\r\n"
        } else {
            b"Connection: close\r\n\r\n"
        });
        out
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        302 => "Found",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Why reading a request stopped. Each maps to a final response (or to silence when the peer left).
#[derive(Debug)]
enum ReadError {
    /// The peer closed or reset the connection, or was idle too long between requests.
    Gone,
    Reject(Response),
}

fn reject(status: u16, message: &str) -> ReadError {
    ReadError::Reject(Response::error(status, message).closing())
}

/// One connection's byte stream with the unread remainder of what it sent (pipelining).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads more bytes, waiting at most until `deadline`. Ok(false) on a clean EOF.
    fn fill(&mut self, deadline: Instant) -> io::Result<bool> {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(deadline - now))?;
        let mut chunk = [0u8; 8192];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::ErrorKind::TimedOut.into())
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one request: head within HEAD_TIMEOUT of its first byte (the wait for that first byte
    /// is `idle`), then exactly Content-Length bytes of body within BODY_TIMEOUT.
    fn read_request(&mut self, idle: Duration) -> Result<Request, ReadError> {
        if self.buf.is_empty() {
            match self.fill(Instant::now() + idle) {
                Ok(true) => {}
                Ok(false) => return Err(ReadError::Gone),
                Err(e) if e.kind() == io::ErrorKind::TimedOut && idle == IDLE_TIMEOUT => {
                    return Err(ReadError::Gone)
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(reject(408, "request head timed out"))
                }
                Err(_) => return Err(ReadError::Gone),
            }
        }
        let head_deadline = Instant::now() + HEAD_TIMEOUT;
        let (mut request, head_len, content_length) = loop {
            match parse_head(&self.buf)? {
                Some(parsed) => break parsed,
                None if self.buf.len() >= MAX_HEAD_BYTES => {
                    return Err(reject(431, "request head larger than 16 KiB"))
                }
                None => match self.fill(head_deadline) {
                    Ok(true) => {}
                    Ok(false) => return Err(ReadError::Gone),
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        return Err(reject(408, "request head not received within 10 s"))
                    }
                    Err(_) => return Err(ReadError::Gone),
                },
            }
        };
        self.buf.drain(..head_len);
        if content_length > 0
            && request
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            let _ = self.stream.set_write_timeout(Some(WRITE_TIMEOUT));
            let _ = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        request.body = self.read_body(content_length, Instant::now() + BODY_TIMEOUT)?;
        Ok(request)
    }

    /// Reads exactly `length` body bytes into a buffer of that size: what came with the head
    /// first, then straight from the socket, never past the body (so memory is the body, once).
    fn read_body(&mut self, length: usize, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::with_capacity(length);
        body.extend(self.buf.drain(..length.min(self.buf.len())));
        while body.len() < length {
            let now = Instant::now();
            let timed_out = || reject(408, "request body not received within 30 s");
            if now >= deadline {
                return Err(timed_out());
            }
            self.stream
                .set_read_timeout(Some(deadline - now))
                .map_err(|_| ReadError::Gone)?;
            let filled = body.len();
            // Within the capacity reserved above: touches only the bytes about to be read.
            body.resize(length.min(filled + 64 * 1024), 0);
            let result = self.stream.read(&mut body[filled..]);
            body.truncate(filled + *result.as_ref().unwrap_or(&0));
            match result {
                Ok(0) => return Err(ReadError::Gone),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timed_out())
                }
                Err(_) => return Err(ReadError::Gone),
            }
        }
        Ok(body)
    }
}

/// Parses a complete head from `buf`: Ok(None) when more bytes are needed. Enforces the header
/// count, the framing rules (no chunked bodies, never both CL and TE, one CL) and the body limit.
fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize, usize)>, ReadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(reject(431, "more than 100 request headers"))
        }
        Err(e) => return Err(reject(400, &format!("malformed request head: {e}"))),
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(reject(431, "request head larger than 16 KiB"));
    }
    let version = parsed.version.unwrap_or(1);
    let target = parsed.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: parsed.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        http10: version == 0,
        ..Request::default()
    };
    let mut content_length: Option<usize> = None;
    for header in parsed.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(header.value).trim().to_string();
        match name.as_str() {
            "transfer-encoding" => {
                return Err(reject(
                    411,
                    "chunked request bodies are not supported: send Content-Length",
                ))
            }
            "content-length" => {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| reject(400, "invalid Content-Length"))?;
                if content_length.is_some_and(|seen| seen as u64 != n) {
                    return Err(reject(400, "conflicting Content-Length headers"));
                }
                if n > MAX_BODY_BYTES as u64 {
                    return Err(reject(413, "request body larger than 1 MiB"));
                }
                content_length = Some(n as usize);
            }
            _ => {}
        }
        request.headers.push((name, value));
    }
    Ok(Some((request, head_len, content_length.unwrap_or(0))))
}

/// Serves one connection until the client closes, asks to close, errs, or the server drains.
fn serve_connection(app: &'static App, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let registration = app.connections.register(&stream);
    {
        use std::os::fd::AsRawFd;
        PEER_FD.with(|fd| fd.set(stream.as_raw_fd()));
    }
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    let mut idle = HEAD_TIMEOUT;
    let peer = conn.stream.peer_addr().ok().map(|a| a.ip());
    loop {
        let (method, response, keep_alive) = match conn.read_request(idle) {
            Ok(mut request) => {
                request.peer = peer;
                let keep_alive = request.wants_keep_alive() && !app.draining();
                let response = route(app, &mut request);
                (request.method, response, keep_alive)
            }
            Err(ReadError::Gone) => break,
            Err(ReadError::Reject(response)) => (String::new(), response, false),
        };
        let keep_alive = keep_alive && !response.close;
        let head_only = method == "HEAD";
        app.metrics.count_http(&method, &response);
        if response
            .write_to(&conn.stream, head_only, keep_alive)
            .is_err()
            || !keep_alive
        {
            break;
        }
        idle = IDLE_TIMEOUT;
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
    drop(registration);
}

/// The open connections, so a drain can wake the ones idling between requests.
#[derive(Default)]
struct ConnectionRegistry {
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, TcpStream>>,
}

struct Registration<'a> {
    registry: &'a ConnectionRegistry,
    id: u64,
}

impl ConnectionRegistry {
    fn register(&self, stream: &TcpStream) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            lock(&self.open).insert(id, clone);
        }
        Registration { registry: self, id }
    }

    /// Stops every connection from reading further requests; responses in progress still go out.
    fn stop_reading_all(&self) {
        for stream in lock(&self.open).values() {
            let _ = stream.shutdown(Shutdown::Read);
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.registry.open).remove(&self.id);
    }
}

/// Answers a connection over MCP_MAX_CONNECTIONS without spawning a thread for it: a 503, then
/// the socket lingers (drained, non-blocking) on one background thread so the client reads the
/// 503 instead of a reset.
struct Rejector {
    lingering: Mutex<Vec<(TcpStream, Instant)>>,
    wake: Condvar,
}

const MAX_LINGERING: usize = 4096;

impl Rejector {
    fn new() -> Rejector {
        Rejector {
            lingering: Mutex::new(Vec::new()),
            wake: Condvar::new(),
        }
    }

    fn reject(&self, stream: TcpStream) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        drain_available(&stream);
        let response = Response::error(503, "server busy: too many connections, retry shortly")
            .with_header("Retry-After", "1")
            .closing();
        let _ = response.write_to(&stream, false, false);
        let _ = stream.shutdown(Shutdown::Write);
        let mut lingering = lock(&self.lingering);
        if lingering.len() < MAX_LINGERING {
            lingering.push((stream, Instant::now() + Duration::from_secs(2)));
            self.wake.notify_one();
        }
    }

    /// Background loop: drop each lingering socket once the client closed or 2 s passed.
    fn run(&self) {
        let mut lingering = lock(&self.lingering);
        loop {
            while lingering.is_empty() {
                lingering = self.wake.wait(lingering).unwrap_or_else(|e| e.into_inner());
            }
            let now = Instant::now();
            lingering.retain(|(stream, until)| now < *until && !drain_available(stream));
            let (guard, _) = self
                .wake
                .wait_timeout(lingering, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner());
            lingering = guard;
        }
    }
}

/// Reads and discards what a non-blocking socket has buffered; true once the peer has closed.
fn drain_available(mut stream: &TcpStream) -> bool {
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

// ── Counting semaphore ───────────────────────────────────────────────────────────────────────
// Hand-rolled (Mutex + Condvar), as the design card asks: it bounds connection threads (pool
// checkouts go through the fair-share `Admission` instead).

struct Semaphore {
    state: Mutex<SemaphoreState>,
    changed: Condvar,
    capacity: usize,
}

struct SemaphoreState {
    in_use: usize,
}

struct Permit<'a> {
    semaphore: &'a Semaphore,
}

impl Semaphore {
    fn new(capacity: usize) -> Semaphore {
        Semaphore {
            state: Mutex::new(SemaphoreState { in_use: 0 }),
            changed: Condvar::new(),
            capacity,
        }
    }

    fn try_acquire(&self) -> Option<Permit<'_>> {
        let mut state = lock(&self.state);
        if state.in_use < self.capacity {
            state.in_use += 1;
            Some(Permit { semaphore: self })
        } else {
            None
        }
    }

    /// Waits until no permit is held or the deadline passes; true when idle.
    fn wait_idle(&self, deadline: Instant) -> bool {
        let mut state = lock(&self.state);
        while state.in_use > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.semaphore.state);
        state.in_use -= 1;
        drop(state);
        self.semaphore.changed.notify_all();
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every structure guarded
/// here stays consistent between statements, so a panic elsewhere must not wedge the server.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

// ── Routing ──────────────────────────────────────────────────────────────────────────────────

fn route(app: &'static App, request: &mut Request) -> Response {
    if let Some(oauth) = &app.oauth {
        if let Some(response) = oauth_route(app, oauth, request) {
            return response;
        }
    }
    let get_like = request.method == "GET" || request.method == "HEAD";
    match request.path.as_str() {
        "/mcp" | "/" => match request.method.as_str() {
            "POST" => handle_mcp_post(app, request),
            _ => Response::error(405, "the MCP endpoint accepts POST only")
                .with_header("Allow", "POST"),
        },
        "/healthz" if get_like => Response::json(200, r#"{"ok":true}"#),
        "/readyz" if get_like => readiness(app, request),
        "/metrics" if get_like => {
            let mut text = app.metrics.render(&app.databases, &app.rates);
            if let Some(oauth) = &app.oauth {
                text.push_str(&oauth.render_metrics());
            }
            Response::new(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                text.into_bytes(),
            )
        }
        "/healthz" | "/readyz" | "/metrics" => {
            Response::error(405, "this endpoint accepts GET only").with_header("Allow", "GET, HEAD")
        }
        _ => Response::error(404, "not found: the MCP endpoint is POST /mcp"),
    }
}

/// /readyz. Why a database is down is a reason code for anyone (a closed set: no names, no
/// addresses) and the operator's full message for a caller with a valid token. With several
/// databases: 200 while at least one is up (the others are still worth serving), each named
/// with its state, `ok` true only when all are.
fn readiness(app: &'static App, request: &Request) -> Response {
    let trusted = || {
        app.auth
            .authenticate(request.header("authorization"))
            .is_some()
    };
    let state = |down: &DbDown| {
        let mut state = json!({"database": "down", "reason": down.reason});
        if trusted() {
            state["error"] = json!(down.message);
        }
        state
    };
    if !app.databases.named {
        let Err(down) = app.databases.default.pool.probe() else {
            return Response::json(200, r#"{"ok":true,"database":"up"}"#);
        };
        let mut body = state(&down);
        body["ok"] = json!(false);
        return Response::json(503, body.to_string());
    }
    let mut databases = Map::new();
    let mut up = 0;
    for database in app.databases.all() {
        let entry = match database.pool.probe() {
            Ok(()) => {
                up += 1;
                json!({"database": "up"})
            }
            Err(down) => state(&down),
        };
        databases.insert(database.name.clone(), entry);
    }
    let all = up == databases.len();
    let body = json!({"ok": all, "databases": databases});
    Response::json(if up > 0 { 200 } else { 503 }, body.to_string())
}

/// The MCP endpoint's HTTP checks, in order: Host (when DNS-rebinding protection is on), Origin,
/// bearer token, content type. Then JSON-RPC takes over.
fn handle_mcp_post(app: &'static App, request: &mut Request) -> Response {
    if app.config.dns_rebinding_protection {
        let host = request.header("host").unwrap_or("");
        if !host_allowed(host, &app.config.allowed_hosts) {
            return Response::error(
                403,
                "forbidden: Host header not allowed (MCP_ALLOWED_HOSTS)",
            );
        }
    }
    if let Some(origin) = request.header("origin") {
        if !origin_allowed(origin, &app.config.allowed_origins) {
            return Response::error(403, "forbidden: Origin not allowed (MCP_ALLOWED_ORIGINS)");
        }
    }
    let caller = match authenticate(app, request.header("authorization")) {
        Ok(caller) => caller,
        Err(refusal) => {
            app.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
            return match &app.oauth {
                Some(oauth) => oauth.refusal_response(&refusal, &request.path),
                None => {
                    Response::error(401, "unauthorized").with_header("WWW-Authenticate", "Bearer")
                }
            };
        }
    };
    let content_type = request.header("content-type").unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Response::error(415, "Content-Type must be application/json");
    }
    handle_jsonrpc(app, request, &caller)
}

/// `host` matches an entry `name` (any port), `name:port`, or `name:*`.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    let (name, _port) = split_host_port(&host);
    allowed.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        entry == host || entry == name || entry.strip_suffix(":*").is_some_and(|e| e == name)
    })
}

fn split_host_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let port = rest[end + 1..].strip_prefix(':');
            return (&host[..end + 2], port);
        }
        return (host, None);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    }
}

/// Loopback origins on any port are always allowed; others must be listed exactly.
fn origin_allowed(origin: &str, extra: &[String]) -> bool {
    let origin = origin.trim_end_matches('/');
    if extra
        .iter()
        .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let (name, port) = split_host_port(rest);
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// Auth
// Contract: `Authorization: Bearer <token>` must match one configured token; the caller's name
// (never the token) is what the rest of the request sees. Every comparison is between SHA-256
// digests, over all tokens, with no early exit, so neither timing nor length tells a guess apart.
// Tokens come from MCP_AUTH_TOKENS and MCP_AUTH_TOKENS_FILE (their union); the file is re-read
// on SIGHUP and when its mtime changes, and a bad file keeps the previous tokens.
// ════════════════════════════════════════════════════════════════════════════════════════════

/// Who is calling, as everything after Auth sees it: a name for audit lines, fair shares and
/// per-analyst database roles, and how the caller proved it. Never the token itself.
#[derive(Debug, Clone, PartialEq)]
struct Caller {
    name: String,
    /// How the caller authenticated: "bearer" (a configured token), "oauth" (an access token this
    /// server issued, see OAuth) or "none" (no tokens and no OAuth are configured, which Config
    /// allows on loopback only).
    via: &'static str,
    /// The client the analyst signed in through, when the credential names one.
    client: Option<String>,
}

impl Caller {
    fn new(name: &str, via: &'static str) -> Caller {
        Caller {
            name: name.to_string(),
            via,
            client: None,
        }
    }
}

#[derive(Clone)]
struct Token {
    name: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}, <secret>)", self.name)
    }
}

/// Parses `name:token` or `name:sha256:<64 hex>` entries; blank entries are skipped.
fn parse_token_list<'a>(entries: impl Iterator<Item = &'a str>) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    for (index, entry) in entries.enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let Some((name, secret)) = entry.split_once(':') else {
            return Err(format!("entry {} is not name:token", index + 1));
        };
        let (name, secret) = (name.trim(), secret.trim());
        if name.is_empty() || secret.is_empty() {
            return Err(format!("entry {} has an empty name or token", index + 1));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        {
            return Err(format!(
                "entry {}: caller name {name:?} may only use letters, digits, . _ - @",
                index + 1
            ));
        }
        let digest = match secret.strip_prefix("sha256:") {
            Some(hex) => parse_hex_digest(hex).ok_or_else(|| {
                format!(
                    "entry {} ({name}): sha256: must be followed by 64 hex digits",
                    index + 1
                )
            })?,
            None => sha256(secret.as_bytes()),
        };
        tokens.push(Token {
            name: name.to_string(),
            digest,
        });
    }
    Ok(tokens)
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

fn read_token_file(path: &str) -> Result<Vec<Token>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let lines = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""));
    parse_token_list(lines).map_err(|e| format!("{path}: {}", e.replace("entry", "line")))
}

/// Why a request to /mcp was refused (the OAuth section turns this into its WWW-Authenticate).
#[derive(Debug, PartialEq)]
enum Refusal {
    /// No credential, or a bearer token that is neither a configured token nor ours.
    Missing,
    /// One of our access tokens, but expired, forged, for another resource, or its analyst was
    /// removed since: the RFC 6750 `invalid_token`.
    InvalidToken(&'static str),
    /// A valid access token whose scope does not include MCP access.
    InsufficientScope,
}

/// Who is calling: a configured bearer token first (unchanged by OAuth), then one of our OAuth
/// access tokens when OAuth is on.
fn authenticate(app: &App, header: Option<&str>) -> Result<Caller, Refusal> {
    if let Some(caller) = app.auth.authenticate(header) {
        return Ok(caller);
    }
    match &app.oauth {
        Some(oauth) => oauth.authenticate(header, &app.auth),
        None => Err(Refusal::Missing),
    }
}

struct Auth {
    /// No tokens and no OAuth: everyone is "anonymous" (Config allows it on loopback only).
    open: bool,
    inline: Vec<Token>,
    file: Option<String>,
    file_tokens: RwLock<Vec<Token>>,
    file_mtime: Mutex<Option<SystemTime>>,
}

static RELOAD_REQUESTED: AtomicBool = AtomicBool::new(false);

impl Auth {
    fn new(config: &Config) -> Auth {
        let auth = Auth {
            open: config.inline_tokens.is_empty()
                && config.tokens_file.is_none()
                && config.oauth.is_none(),
            inline: config.inline_tokens.clone(),
            file: config.tokens_file.clone(),
            file_tokens: RwLock::new(Vec::new()),
            file_mtime: Mutex::new(None),
        };
        auth.reload_file("start-up");
        auth
    }

    fn enabled(&self) -> bool {
        !self.open
    }

    /// The caller, or None when the header carries no configured token. With no tokens and no
    /// OAuth configured (loopback only, enforced by Config) everyone is "anonymous".
    fn authenticate(&self, header: Option<&str>) -> Option<Caller> {
        if self.open {
            return Some(Caller::new("anonymous", "none"));
        }
        let presented = bearer_credential(header?)?;
        self.lookup(presented)
            .map(|(name, _)| Caller::new(&name, "bearer"))
    }

    /// The name of the analyst whose token this is, and the token's digest. Constant-time over
    /// every configured token: the sign-in page uses this too.
    fn lookup(&self, secret: &str) -> Option<(String, [u8; 32])> {
        let presented = sha256(secret.trim().as_bytes());
        let file_tokens = self.file_tokens.read().unwrap_or_else(|e| e.into_inner());
        let mut matched: Option<&Token> = None;
        for token in self.inline.iter().chain(file_tokens.iter()) {
            if constant_time_eq(&token.digest, &presented) && matched.is_none() {
                matched = Some(token);
            }
        }
        matched.map(|t| (t.name.clone(), t.digest))
    }

    /// Whether `name` still holds the token an OAuth grant was made with (its fingerprint, see
    /// grant_fingerprint): removing the analyst or replacing their token ends every grant.
    fn still_holds(&self, name: &str, fingerprint: &str) -> bool {
        let file_tokens = self.file_tokens.read().unwrap_or_else(|e| e.into_inner());
        let mut found = false;
        for token in self.inline.iter().chain(file_tokens.iter()) {
            found |= token.name == name && grant_fingerprint(&token.digest) == fingerprint;
        }
        found
    }

    /// Re-reads the token file; on any problem keeps the tokens it had and logs why.
    fn reload_file(&self, why: &str) {
        let Some(path) = &self.file else { return };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        *lock(&self.file_mtime) = mtime;
        match read_token_file(path) {
            Ok(tokens) => {
                let count = tokens.len();
                *self.file_tokens.write().unwrap_or_else(|e| e.into_inner()) = tokens;
                log_event(
                    "info",
                    "tokens loaded",
                    &[
                        ("source", path.as_str()),
                        ("why", why),
                        ("count", &count.to_string()),
                    ],
                );
            }
            Err(e) => log_event(
                "warn",
                "token file not reloaded, keeping previous tokens",
                &[("error", &e)],
            ),
        }
    }

    /// Background loop: reload on SIGHUP or when the file's mtime changes.
    fn watch(&self) {
        let Some(path) = &self.file else { return };
        loop {
            std::thread::sleep(Duration::from_millis(500));
            if RELOAD_REQUESTED.swap(false, Ordering::SeqCst) {
                self.reload_file("SIGHUP");
                continue;
            }
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if mtime != *lock(&self.file_mtime) {
                self.reload_file("file changed");
            }
        }
    }
}

/// The credential of an `Authorization: Bearer <credential>` header.
fn bearer_credential(header: &str) -> Option<&str> {
    let (scheme, presented) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| presented.trim())
        .filter(|p| !p.is_empty())
}

/// What an OAuth grant made with a personal token remembers of it: 16 hex digits of a hash of
/// its digest (never the token, and nothing a guess could be checked against offline).
fn grant_fingerprint(digest: &[u8; 32]) -> String {
    let mut input = b"analytics-mcp grant ".to_vec();
    input.extend_from_slice(digest);
    hex(&sha256(&input)[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Digest comparison in constant time (subtle's `ct_eq`, the primitive rustls itself uses).
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// SHA-256 from the `sha2` crate (already compiled in for SCRAM via `postgres`).
fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// OAuth
// Contract: off unless MCP_OAUTH is `token` or `oidc`; then this server is both the OAuth 2.1
// resource server of /mcp (RFC 9728 metadata, RFC 6750 challenges, RFC 8707 audience) and its own
// authorization server (RFC 8414 metadata, /authorize, /token, /register on the MCP origin).
// Analysts sign in on a page of ours with their personal token, or at the company's OpenID
// provider; either way the MCP client only ever gets our tokens. Everything we issue — client
// ids of registered clients, sign-in page state, codes, access and refresh tokens — is an HS256
// JWT under a key derived per purpose from MCP_OAUTH_KEY_FILE (re-read when it changes, so keys
// rotate without a restart), so any replica with the file accepts any replica's. What is
// in-process, each table capped (MCP_OAUTH_MAX_*) with an eviction that never lets a code or a
// refresh token through twice nor forgets a throttled address: the single-use record of codes,
// the sign-ins' refresh rotation and revocation, the sign-in throttle, the document cache. Every
// request re-checks that the analyst is still allowed (token file / allow-list): removing one
// ends their access at the next call, whatever they hold. Static bearer tokens work unchanged.
// ════════════════════════════════════════════════════════════════════════════════════════════

const SCOPE_MCP: &str = "mcp";
const SUPPORTED_SCOPES: [&str; 2] = ["mcp", "offline_access"];
const CODE_TTL_S: u64 = 60;
/// How long a sign-in page stays usable (and its CSRF cookie lives).
const SIGN_IN_TTL_S: u64 = 600;
const REGISTRATION_MAX_BYTES: usize = 16 * 1024;
const CLIENT_DOCUMENT_MAX_BYTES: u64 = 16 * 1024;
const CLIENT_DOCUMENT_CACHE_S: u64 = 300;
const PROVIDER_DOCUMENT_MAX_BYTES: u64 = 256 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REDIRECT_URIS: usize = 10;
const MAX_URI_LEN: usize = 2000;
/// Failed sign-ins allowed per client address within THROTTLE_WINDOW before it is refused.
const THROTTLE_FAILURES: u32 = 10;
const THROTTLE_WINDOW: Duration = Duration::from_secs(600);
const GOOGLE_ISSUER: &str = "https://accounts.google.com";

// ── Configuration ────────────────────────────────────────────────────────────────────────────

#[derive(Debug, Clone, Copy, PartialEq)]
enum OAuthMode {
    /// Sign in with the personal token of MCP_AUTH_TOKENS / the tokens file.
    Token,
    /// Sign in at the company's OpenID Connect provider.
    Oidc,
}

#[derive(Debug, Clone)]
struct OAuthConfig {
    mode: OAuthMode,
    /// `scheme://host[:port]`, no trailing slash: the issuer, and with /mcp the resource.
    public_url: String,
    key_file: Option<String>,
    access_ttl_s: u64,
    refresh_ttl_s: u64,
    ca_file: Option<String>,
    client_ip_header: Option<String>,
    allow_private_fetch: bool,
    limits: OAuthLimits,
    oidc: Option<OidcConfig>,
}

/// Caps of the in-process tables (see "In-process tables, bounded").
#[derive(Debug, Clone)]
struct OAuthLimits {
    /// Redeemed codes remembered (each for the code's 60 s).
    codes: usize,
    /// Sign-ins whose refresh tokens rotated here (each until its last token expires).
    sign_ins: usize,
    /// Client addresses (IPv4, IPv6 /64) the sign-in throttle counts on their own.
    addresses: usize,
    /// Client ID Metadata Documents cached.
    documents: usize,
}

impl OAuthLimits {
    fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<OAuthLimits, ConfigError> {
        let cap =
            |name, default| parse_number(get, name, default, 1, 10_000_000).map(|n| n as usize);
        Ok(OAuthLimits {
            codes: cap("MCP_OAUTH_MAX_CODES", 10_000)?,
            sign_ins: cap("MCP_OAUTH_MAX_SIGN_INS", 20_000)?,
            addresses: cap("MCP_OAUTH_MAX_ADDRESSES", 10_000)?,
            documents: cap("MCP_OAUTH_MAX_CLIENT_DOCUMENTS", 100)?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum NameFrom {
    Email,
    LocalPart,
}

#[derive(Clone)]
struct OidcConfig {
    issuer: String,
    client_id: String,
    client_secret: String,
    allowed_domains: Vec<String>,
    allowed_emails: Vec<String>,
    allowed_file: Option<String>,
    name_from: NameFrom,
    provider_name: String,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OidcConfig({}, {}, <secret>)",
            self.issuer, self.client_id
        )
    }
}

impl OAuthConfig {
    fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<OAuthConfig>, ConfigError> {
        let mode = match get("MCP_OAUTH").as_deref() {
            None | Some("off") | Some("0") => return Ok(None),
            Some("token") => OAuthMode::Token,
            Some("oidc") => OAuthMode::Oidc,
            Some(other) => {
                return Err(ConfigError(format!(
                    "MCP_OAUTH must be off, token or oidc, not {other:?}"
                )))
            }
        };
        let public_url = get("MCP_PUBLIC_URL").ok_or_else(|| {
            ConfigError(
                "MCP_PUBLIC_URL is required with MCP_OAUTH (the public origin clients use, e.g. https://analytics.example.org): \
                 it is the issuer and resource of every token, never guessed from Host"
                    .into(),
            )
        })?;
        let public_url = parse_public_url(&public_url)
            .map_err(|e| ConfigError(format!("MCP_PUBLIC_URL: {e}")))?;
        let key_file = get("MCP_OAUTH_KEY_FILE");
        if let Some(path) = &key_file {
            read_key_file(path).map_err(|e| ConfigError(format!("MCP_OAUTH_KEY_FILE: {e}")))?;
        }
        let ca_file = get("MCP_OAUTH_CA_FILE");
        if let Some(path) = &ca_file {
            read_pem_certificates(std::path::Path::new(path))
                .map_err(|e| ConfigError(format!("MCP_OAUTH_CA_FILE: {e}")))?;
        }
        let oidc = match mode {
            OAuthMode::Token => None,
            OAuthMode::Oidc => Some(OidcConfig::from_env(get)?),
        };
        Ok(Some(OAuthConfig {
            mode,
            public_url,
            key_file,
            access_ttl_s: parse_number(get, "MCP_OAUTH_ACCESS_TTL_S", 3600, 60, 3600)?,
            refresh_ttl_s: match parse_number(get, "MCP_OAUTH_REFRESH_TTL_S", 2_592_000, 0, 31_536_000)? {
                n @ 1..=299 => {
                    return Err(ConfigError(format!(
                        "MCP_OAUTH_REFRESH_TTL_S must be 0 (no refresh tokens) or at least 300, not {n}"
                    )))
                }
                n => n,
            },
            ca_file,
            client_ip_header: get("MCP_OAUTH_CLIENT_IP_HEADER").map(|h| h.to_ascii_lowercase()),
            allow_private_fetch: parse_flag(get, "MCP_OAUTH_ALLOW_PRIVATE_FETCH")?,
            limits: OAuthLimits::from_env(get)?,
            oidc,
        }))
    }
}

impl OidcConfig {
    fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<OidcConfig, ConfigError> {
        let required = |name: &str, example: &str| {
            get(name).ok_or_else(|| {
                ConfigError(format!(
                    "{name} is required with MCP_OAUTH=oidc ({example})"
                ))
            })
        };
        let issuer = required("MCP_OIDC_ISSUER", "e.g. https://accounts.google.com")?;
        let issuer = issuer.trim_end_matches('/').to_string();
        if !issuer.starts_with("https://") || split_url(&issuer).is_none() {
            return Err(ConfigError(format!(
                "MCP_OIDC_ISSUER must be an https URL, not {issuer:?}"
            )));
        }
        let client_id = required(
            "MCP_OIDC_CLIENT_ID",
            "this server's client id at the provider",
        )?;
        let secret_file = required(
            "MCP_OIDC_CLIENT_SECRET_FILE",
            "a file holding the client secret the provider issued",
        )?;
        let client_secret = std::fs::read_to_string(&secret_file)
            .map_err(|e| {
                ConfigError(format!(
                    "MCP_OIDC_CLIENT_SECRET_FILE: cannot read {secret_file}: {e}"
                ))
            })?
            .trim()
            .to_string();
        if client_secret.is_empty() {
            return Err(ConfigError(format!(
                "MCP_OIDC_CLIENT_SECRET_FILE: {secret_file} is empty"
            )));
        }
        let lower_list = |name: &str| {
            get(name)
                .map(|s| split_list(&s.to_ascii_lowercase()))
                .unwrap_or_default()
        };
        let allowed_domains: Vec<String> = lower_list("MCP_OIDC_ALLOWED_DOMAINS")
            .into_iter()
            .map(|d| d.trim_start_matches('@').to_string())
            .collect();
        let allowed_emails = lower_list("MCP_OIDC_ALLOWED_EMAILS");
        if let Some(bad) = allowed_emails.iter().find(|e| !e.contains('@')) {
            return Err(ConfigError(format!(
                "MCP_OIDC_ALLOWED_EMAILS: {bad:?} is not an e-mail address"
            )));
        }
        let allowed_file = get("MCP_OIDC_ALLOWED_FILE");
        if let Some(path) = &allowed_file {
            read_allow_file(path)
                .map_err(|e| ConfigError(format!("MCP_OIDC_ALLOWED_FILE: {e}")))?;
        }
        if allowed_domains.is_empty() && allowed_emails.is_empty() && allowed_file.is_none() {
            return Err(ConfigError(
                "MCP_OAUTH=oidc needs MCP_OIDC_ALLOWED_DOMAINS, MCP_OIDC_ALLOWED_EMAILS or MCP_OIDC_ALLOWED_FILE: \
                 who may sign in is never 'everyone the provider knows'"
                    .into(),
            ));
        }
        let name_from = match get("MCP_OIDC_ANALYST_NAME").as_deref() {
            None | Some("email") => NameFrom::Email,
            Some("local-part") => NameFrom::LocalPart,
            Some(other) => {
                return Err(ConfigError(format!(
                    "MCP_OIDC_ANALYST_NAME must be email or local-part, not {other:?}"
                )))
            }
        };
        let provider_name = get("MCP_OIDC_PROVIDER_NAME").unwrap_or_else(|| {
            split_url(&issuer)
                .map(|u| u.host.to_string())
                .unwrap_or_else(|| issuer.clone())
        });
        Ok(OidcConfig {
            issuer,
            client_id,
            client_secret,
            allowed_domains,
            allowed_emails,
            allowed_file,
            name_from,
            provider_name,
        })
    }
}

/// `https://host[:port]` (http only for a loopback host), without path, query or fragment.
fn parse_public_url(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let url = split_url(trimmed).ok_or_else(|| format!("{raw:?} is not an http(s) URL"))?;
    if !url.path_and_query.is_empty() {
        return Err(format!(
            "{raw:?} must be an origin without a path (the server answers at /mcp and / of it)"
        ));
    }
    if url.scheme.eq_ignore_ascii_case("http") && !is_loopback_host(url.host) {
        return Err(format!(
            "{raw:?} must be https (plain http is accepted for a loopback host only)"
        ));
    }
    Ok(format!(
        "{}://{}",
        url.scheme.to_ascii_lowercase(),
        url.authority.to_ascii_lowercase()
    ))
}

// ── URLs, forms and encodings ────────────────────────────────────────────────────────────────

/// An absolute http(s) URL split into the parts we compare. No userinfo, no fragment, no
/// whitespace or control characters: what is not plain is refused rather than interpreted.
#[derive(Debug, PartialEq)]
struct Url<'a> {
    scheme: &'a str,
    /// host[:port] as written
    authority: &'a str,
    /// host without port (IPv6 with its brackets)
    host: &'a str,
    port: Option<u16>,
    /// everything from the first `/` or `?` after the authority ("" when none)
    path_and_query: &'a str,
}

fn split_url(raw: &str) -> Option<Url<'_>> {
    if raw.len() > MAX_URI_LEN
        || raw.contains('#')
        || raw.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let (scheme, rest) = raw.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return None;
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') || authority.contains('\\') {
        return None;
    }
    let (host, port) = split_host_port(authority);
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok()?),
    };
    if host.is_empty() || host == "[]" {
        return None;
    }
    Some(Url {
        scheme,
        authority,
        host,
        port,
        path_and_query,
    })
}

fn origin_of(url: &str) -> Option<String> {
    split_url(url).map(|u| format!("{}://{}", u.scheme, u.authority))
}

fn is_loopback_redirect(url: &Url) -> bool {
    url.scheme == "http" && matches!(url.host, "127.0.0.1" | "localhost" | "[::1]")
}

/// A redirect URI a client may register: https anywhere, or http on a loopback host (RFC 8252
/// native clients such as Claude Code, any port).
fn redirect_uri_allowed(uri: &str) -> bool {
    split_url(uri).is_some_and(|url| url.scheme == "https" || is_loopback_redirect(&url))
}

/// Exact match, except that a loopback redirect URI matches on any port (RFC 8252 §7.3).
fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    match (split_url(registered), split_url(presented)) {
        (Some(r), Some(p)) => {
            is_loopback_redirect(&r)
                && is_loopback_redirect(&p)
                && r.host == p.host
                && r.path_and_query == p.path_and_query
        }
        _ => false,
    }
}

/// `application/x-www-form-urlencoded` (bodies and query strings). A parameter given twice is an
/// error, as RFC 6749 §3.1 requires.
fn parse_form(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key).ok_or("a parameter name is not valid percent-encoding")?;
        let value = percent_decode(value)
            .ok_or_else(|| format!("parameter {key} is not valid percent-encoding"))?;
        if out.insert(key.clone(), value).is_some() {
            return Err(format!("parameter {key} is given more than once"));
        }
    }
    Ok(out)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let pair = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(pair, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `uri` with `params` added to its query.
fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = uri.to_string();
    let mut separator = if uri.contains('?') { '&' } else { '?' };
    for (key, value) in params {
        out.push(separator);
        out.push_str(key);
        out.push('=');
        out.push_str(&percent_encode(value));
        separator = '&';
    }
    out
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The one source of randomness: the OS's (getrandom). Keys, codes, nonces and session ids all
/// come from here; a failing source is an error, never a weaker fallback.
fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| format!("the OS random source failed: {e}"))?;
    Ok(buf)
}

/// N random bytes as 2N lowercase hex digits.
fn random_hex<const N: usize>() -> Result<String, String> {
    Ok(hex(&random_bytes::<N>()?))
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// BASE64URL(SHA-256(verifier)) == challenge, for a verifier of RFC 7636's shape.
fn pkce_verifier_matches(verifier: &str, challenge: &str) -> bool {
    let shaped = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    shaped && b64url(&sha256(verifier.as_bytes())) == challenge
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Result<[u8; 32], String> {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
        .map_err(|e| format!("HMAC key refused: {e}"))?;
    mac.update(message);
    Ok(mac.finalize().into_bytes().into())
}

fn cookie<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

// ── Keys and signed tokens ───────────────────────────────────────────────────────────────────

/// What a signed token is for. Each purpose signs with its own key derived from the master key,
/// so no token of one kind can ever pass as another (a code as an access token, a client id as
/// a refresh token, …), on top of the `use` claim every token carries.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Purpose {
    Access,
    Refresh,
    Code,
    Client,
    SignIn,
    Provider,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Access => "access",
            Purpose::Refresh => "refresh",
            Purpose::Code => "code",
            Purpose::Client => "client",
            Purpose::SignIn => "sign-in",
            Purpose::Provider => "provider",
        }
    }
}

#[derive(Clone)]
struct MasterKey {
    kid: String,
    /// One key per Purpose (index: Purpose as usize), derived at start-up.
    derived: [[u8; 32]; 6],
}

/// The keys of MCP_OAUTH_KEY_FILE (or one generated at start): the first signs, all verify.
struct KeyRing {
    keys: Vec<MasterKey>,
}

fn decode_key(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = text.trim();
    if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
            .collect();
    }
    let engines = [
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
    ];
    engines.iter().find_map(|e| e.decode(text).ok())
}

fn read_key_file(path: &str) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let key = decode_key(line).ok_or_else(|| {
            format!(
                "{path} line {}: not base64 or hex (make one with `analytics-mcp oauth-key`)",
                number + 1
            )
        })?;
        if key.len() < 32 {
            return Err(format!(
                "{path} line {}: a key must be at least 32 random bytes, this one has {}",
                number + 1,
                key.len()
            ));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(format!(
            "{path} holds no key (make one with `analytics-mcp oauth-key`)"
        ));
    }
    Ok(keys)
}

fn new_signing_key_line() -> Result<String, String> {
    Ok(b64url(&random_bytes::<32>()?))
}

const PURPOSES: [Purpose; 6] = [
    Purpose::Access,
    Purpose::Refresh,
    Purpose::Code,
    Purpose::Client,
    Purpose::SignIn,
    Purpose::Provider,
];

impl KeyRing {
    fn new(secrets: Vec<Vec<u8>>) -> Result<KeyRing, String> {
        let mut keys = Vec::new();
        for secret in secrets {
            let mut derived = [[0u8; 32]; 6];
            for (slot, purpose) in derived.iter_mut().zip(PURPOSES) {
                *slot = hmac_sha256(
                    &secret,
                    format!("analytics-mcp oauth v1 {}", purpose.label()).as_bytes(),
                )?;
            }
            keys.push(MasterKey {
                kid: hex(&sha256(&secret)[..6]),
                derived,
            });
        }
        Ok(KeyRing { keys })
    }

    fn derived(key: &MasterKey, purpose: Purpose) -> [u8; 32] {
        key.derived[purpose as usize]
    }

    /// Signs `claims` (plus `use` and `iat`) for `purpose` with the first key.
    fn sign(&self, purpose: Purpose, mut claims: Map<String, Value>) -> Result<String, String> {
        let key = self.keys.first().ok_or("no signing key")?;
        claims.insert("use".into(), json!(purpose.label()));
        claims.entry("iat").or_insert(json!(now_s()));
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let secret = KeyRing::derived(key, purpose);
        let encoding = jsonwebtoken::EncodingKey::from_secret(&secret)
            .map_err(|e| format!("signing key: {e}"))?;
        jsonwebtoken::encode(&header, &Value::Object(claims), &encoding)
            .map_err(|e| format!("signing failed: {e}"))
    }

    /// The claims of a token we signed for `purpose` and `audience`, unexpired; None for anything
    /// else (another purpose, an unknown key, `alg` other than HS256 — `none` included —, a bad
    /// signature, a wrong issuer or audience, expired). The reason is for logs and challenges.
    fn verify(
        &self,
        purpose: Purpose,
        token: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<Map<String, Value>, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        if header.alg != jsonwebtoken::Algorithm::HS256 {
            return Err("token not signed by this server");
        }
        let kid = header.kid.ok_or("token not signed by this server")?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or("token signed with a key this server no longer has")?;
        let secret = KeyRing::derived(key, purpose);
        let decoding = jsonwebtoken::DecodingKey::from_secret(&secret)
            .map_err(|_| "token not signed by this server")?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired",
                jsonwebtoken::errors::ErrorKind::InvalidAudience => "token is for another resource",
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => "token from another issuer",
                _ => "token not signed by this server",
            })?;
        if data.claims.get("use").and_then(Value::as_str) != Some(purpose.label()) {
            return Err("token not signed by this server");
        }
        Ok(data.claims)
    }
}

fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> &'a str {
    claims.get(name).and_then(Value::as_str).unwrap_or("")
}

// ── In-process tables, bounded ───────────────────────────────────────────────────────────────
// What OAuth keeps in memory grows with what clients do, so each table has a cap (MCP_OAUTH_MAX_*)
// and a way to make room that never weakens what the table is for. The single-use tables let go
// of their oldest record and remember only how far they let go (a floor): whatever is at or below
// it and no longer recorded is treated as used or ended — refused, never accepted twice. The
// throttle never forgets an address inside its window: addresses it has no room for share one
// allowance. The document cache is only a cache: the entry nearest its expiry makes room.

/// An id as the tables keep it: 128 bits of the token's id string, so an entry is a fixed size
/// whatever a token carries.
fn table_id(id: &str) -> u128 {
    let digest = sha256(id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}

/// Where a record sits in a single-use table: when what it records was issued (ms, from the
/// signed token), then its id. Tokens carry it, so a lookup needs nothing else.
type TableKey = (u64, u128);

/// What a single-use table knows about a key.
enum Seen<'a, V> {
    Recorded(&'a mut V),
    /// At or below the floor and not recorded: maybe let go to make room, so treated as used.
    Forgotten,
    New,
}

/// What recording did.
#[derive(Debug, PartialEq)]
enum Recorded {
    Kept,
    /// Kept, and the oldest record was let go to make room (the floor rose to it).
    MadeRoom,
    /// Not kept: the key is at or below the floor, or older than every record of a full table.
    Refused,
}

/// Records ordered by `TableKey`, at most `cap`, each until its expiry (unix seconds).
struct OnceTable<V> {
    cap: usize,
    entries: BTreeMap<TableKey, (V, u64)>,
    floor: Option<TableKey>,
}

impl<V> OnceTable<V> {
    fn new(cap: usize) -> OnceTable<V> {
        OnceTable {
            cap: cap.max(1),
            entries: BTreeMap::new(),
            floor: None,
        }
    }

    fn seen(&mut self, key: TableKey) -> Seen<'_, V> {
        let below_floor = self.floor.is_some_and(|floor| key <= floor);
        match self.entries.get_mut(&key) {
            Some((value, _)) => Seen::Recorded(value),
            None if below_floor => Seen::Forgotten,
            None => Seen::New,
        }
    }

    /// Records a key `seen` called New.
    fn record(&mut self, key: TableKey, value: V, until: u64) -> Recorded {
        if self.floor.is_some_and(|floor| key <= floor) {
            return Recorded::Refused;
        }
        if self.entries.len() >= self.cap {
            self.forget_expired(now_s());
        }
        let mut outcome = Recorded::Kept;
        if self.entries.len() >= self.cap {
            match self.entries.first_key_value() {
                Some((oldest, _)) if *oldest < key => {
                    let oldest = *oldest;
                    self.entries.remove(&oldest);
                    self.floor = Some(self.floor.map_or(oldest, |floor| floor.max(oldest)));
                    outcome = Recorded::MadeRoom;
                }
                _ => return Recorded::Refused,
            }
        }
        self.entries.insert(key, (value, until));
        outcome
    }

    /// Drops records past their expiry: what they recorded no longer verifies anyway.
    fn forget_expired(&mut self, now: u64) {
        self.entries.retain(|_, (_, until)| *until >= now);
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// How a redemption of a single-use code went.
#[derive(Debug, PartialEq)]
enum CodeUse {
    First,
    /// Recorded now, and the oldest redeemed code was let go to make room.
    FirstMadeRoom,
    AlreadyUsed,
    /// Too old to be told apart from a code let go under load: refused.
    Forgotten,
}

/// One sign-in (a refresh-token family): the newest refresh generation redeemed here, and
/// whether it was revoked.
struct SignIn {
    generation: u64,
    revoked: bool,
}

/// How a refresh went.
#[derive(Debug, PartialEq)]
enum Rotation {
    /// `made_room`: the oldest sign-in was ended to record this one.
    Rotated {
        made_room: bool,
    },
    /// An older generation came back: the sign-in is revoked from now on.
    Replayed,
    Revoked,
    /// At or below the floor: ended to make room (or older than everything a full table holds).
    Ended,
}

/// Redeemed codes (until they expire, ≤ 60 s) and sign-ins with their refresh generation and
/// revocation (until their last access token expires).
struct OnceLedger {
    codes: Mutex<OnceTable<()>>,
    sign_ins: Mutex<OnceTable<SignIn>>,
}

impl OnceLedger {
    fn new(limits: &OAuthLimits) -> OnceLedger {
        OnceLedger {
            codes: Mutex::new(OnceTable::new(limits.codes)),
            sign_ins: Mutex::new(OnceTable::new(limits.sign_ins)),
        }
    }

    fn use_code(&self, key: TableKey, until: u64) -> CodeUse {
        let mut codes = lock(&self.codes);
        match codes.seen(key) {
            Seen::Recorded(_) => CodeUse::AlreadyUsed,
            Seen::Forgotten => CodeUse::Forgotten,
            Seen::New => match codes.record(key, (), until) {
                Recorded::Kept => CodeUse::First,
                Recorded::MadeRoom => CodeUse::FirstMadeRoom,
                Recorded::Refused => CodeUse::Forgotten,
            },
        }
    }

    /// A refresh of generation `generation` of the sign-in at `key`; one lock for the check and
    /// the record, so two concurrent uses of one token cannot both pass.
    fn rotate(&self, key: TableKey, generation: u64, until: u64) -> Rotation {
        let mut sign_ins = lock(&self.sign_ins);
        match sign_ins.seen(key) {
            Seen::Recorded(sign_in) if sign_in.revoked => Rotation::Revoked,
            Seen::Recorded(sign_in) if generation <= sign_in.generation => {
                sign_in.revoked = true;
                Rotation::Replayed
            }
            Seen::Recorded(sign_in) => {
                sign_in.generation = generation;
                Rotation::Rotated { made_room: false }
            }
            Seen::Forgotten => Rotation::Ended,
            Seen::New => {
                let sign_in = SignIn {
                    generation,
                    revoked: false,
                };
                match sign_ins.record(key, sign_in, until) {
                    Recorded::Kept => Rotation::Rotated { made_room: false },
                    Recorded::MadeRoom => Rotation::Rotated { made_room: true },
                    Recorded::Refused => Rotation::Ended,
                }
            }
        }
    }

    /// Whether the sign-in an access token belongs to was revoked, or ended to make room.
    fn sign_in_ended(&self, key: TableKey) -> bool {
        match lock(&self.sign_ins).seen(key) {
            Seen::Recorded(sign_in) => sign_in.revoked,
            Seen::Forgotten => true,
            Seen::New => false,
        }
    }

    fn forget_expired(&self) {
        let now = now_s();
        lock(&self.codes).forget_expired(now);
        lock(&self.sign_ins).forget_expired(now);
    }

    fn sizes(&self) -> (usize, usize) {
        (lock(&self.codes).len(), lock(&self.sign_ins).len())
    }
}

/// The throttle's unit: an IPv4 address, or an IPv6 /64 (what one subscriber or host holds, so
/// one attacker's addresses do not count as many).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ThrottleKey {
    V4(u32),
    V6(u64),
}

fn throttle_key(address: IpAddr) -> ThrottleKey {
    match address {
        IpAddr::V4(v4) => ThrottleKey::V4(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ThrottleKey::V4(u32::from(v4)),
            None => ThrottleKey::V6((u128::from(v6) >> 64) as u64),
        },
    }
}

/// Failed sign-ins per address (throttle_key), in fixed windows. An address stays until its
/// window ends; when `cap` addresses are held, every other address shares `overflow`.
struct Throttle {
    cap: usize,
    state: Mutex<ThrottleState>,
}

#[derive(Default)]
struct ThrottleState {
    failures: HashMap<ThrottleKey, (u32, Instant)>,
    overflow: Option<(u32, Instant)>,
}

fn window_blocks(entry: Option<&(u32, Instant)>) -> bool {
    entry.is_some_and(|(n, since)| *n >= THROTTLE_FAILURES && since.elapsed() < THROTTLE_WINDOW)
}

fn count_failure(entry: &mut (u32, Instant)) {
    if entry.1.elapsed() >= THROTTLE_WINDOW {
        *entry = (0, Instant::now());
    }
    entry.0 += 1;
}

impl Throttle {
    fn new(cap: usize) -> Throttle {
        Throttle {
            cap: cap.max(1),
            state: Mutex::new(ThrottleState::default()),
        }
    }

    fn blocked(&self, address: IpAddr) -> bool {
        let state = lock(&self.state);
        match state.failures.get(&throttle_key(address)) {
            Some(entry) => window_blocks(Some(entry)),
            None if state.failures.len() >= self.cap => window_blocks(state.overflow.as_ref()),
            None => false,
        }
    }

    /// Counts a failure; true when the table was full, so it counted in the shared allowance.
    fn record_failure(&self, address: IpAddr) -> bool {
        let key = throttle_key(address);
        let mut state = lock(&self.state);
        if let Some(entry) = state.failures.get_mut(&key) {
            count_failure(entry);
            return false;
        }
        if state.failures.len() >= self.cap {
            state
                .failures
                .retain(|_, (_, since)| since.elapsed() < THROTTLE_WINDOW);
        }
        if state.failures.len() < self.cap {
            state.failures.insert(key, (1, Instant::now()));
            return false;
        }
        count_failure(state.overflow.get_or_insert((0, Instant::now())));
        true
    }

    fn forget_expired(&self) {
        let mut state = lock(&self.state);
        state
            .failures
            .retain(|_, (_, since)| since.elapsed() < THROTTLE_WINDOW);
        if state
            .overflow
            .is_some_and(|(_, since)| since.elapsed() >= THROTTLE_WINDOW)
        {
            state.overflow = None;
        }
    }

    fn len(&self) -> usize {
        lock(&self.state).failures.len()
    }
}

/// Client ID Metadata Documents as checked, each for CLIENT_DOCUMENT_CACHE_S, at most `cap`.
struct DocumentCache {
    cap: usize,
    entries: Mutex<HashMap<String, (ClientInfo, Instant)>>,
}

impl DocumentCache {
    fn new(cap: usize) -> DocumentCache {
        DocumentCache {
            cap: cap.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, url: &str) -> Option<ClientInfo> {
        lock(&self.entries)
            .get(url)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(client, _)| client.clone())
    }

    /// Caches `client`; true when a full cache let its entry nearest expiry go to make room.
    fn insert(&self, url: &str, client: ClientInfo) -> bool {
        let mut entries = lock(&self.entries);
        let now = Instant::now();
        if entries.len() >= self.cap && !entries.contains_key(url) {
            entries.retain(|_, (_, until)| *until > now);
        }
        let mut made_room = false;
        if entries.len() >= self.cap && !entries.contains_key(url) {
            let nearest = entries
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(key, _)| key.clone());
            if let Some(key) = nearest {
                entries.remove(&key);
                made_room = true;
            }
        }
        let until = now + Duration::from_secs(CLIENT_DOCUMENT_CACHE_S);
        entries.insert(url.to_string(), (client, until));
        made_room
    }

    fn forget_expired(&self) {
        let now = Instant::now();
        lock(&self.entries).retain(|_, (_, until)| *until > now);
    }

    fn len(&self) -> usize {
        lock(&self.entries).len()
    }
}

// ── Clients ──────────────────────────────────────────────────────────────────────────────────

#[derive(Clone, Copy, Debug, PartialEq)]
enum ClientAuthMethod {
    /// A public client: PKCE is its only proof.
    None,
    Post,
    Basic,
}

impl ClientAuthMethod {
    fn parse(text: &str) -> Option<ClientAuthMethod> {
        match text {
            "none" => Some(ClientAuthMethod::None),
            "client_secret_post" => Some(ClientAuthMethod::Post),
            "client_secret_basic" => Some(ClientAuthMethod::Basic),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            ClientAuthMethod::None => "none",
            ClientAuthMethod::Post => "client_secret_post",
            ClientAuthMethod::Basic => "client_secret_basic",
        }
    }
}

/// A client as the flow needs it, whichever way it registered.
#[derive(Clone, Debug)]
struct ClientInfo {
    id: String,
    /// What the pages and audit lines call it (self-asserted: the pages show the redirect too).
    name: String,
    redirect_uris: Vec<String>,
    auth_method: ClientAuthMethod,
    refresh: bool,
    /// Registered through a Client ID Metadata Document (its https client_id is its identity).
    document: bool,
}

impl ClientInfo {
    fn registered_redirect(&self, presented: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|r| redirect_uri_matches(r, presented))
    }
}

/// Why a client id did not resolve to a client.
#[derive(Debug)]
enum ClientError {
    /// Not an id we issued (or forged, or signed with a retired key): `invalid_client`.
    Unknown,
    /// A metadata document URL whose document could not be fetched or is not acceptable.
    Document(String),
}

/// What a registration request or metadata document says about a client, checked.
struct ClientMetadata {
    name: String,
    redirect_uris: Vec<String>,
    auth_method: ClientAuthMethod,
    refresh: bool,
}

/// The client metadata of a registration request or a metadata document, checked. Unknown
/// fields are ignored (RFC 7591 §2); anything we would have to guess about is refused with the
/// RFC 7591 error code and what to change.
fn client_from_metadata(
    metadata: &Map<String, Value>,
    document: bool,
) -> Result<ClientMetadata, (&'static str, String)> {
    let bad = |what: String| ("invalid_client_metadata", what);
    let uris = match metadata.get("redirect_uris") {
        Some(Value::Array(uris)) if !uris.is_empty() => uris,
        _ => {
            return Err((
                "invalid_redirect_uri",
                "redirect_uris must be a non-empty array".into(),
            ))
        }
    };
    if uris.len() > MAX_REDIRECT_URIS {
        return Err((
            "invalid_redirect_uri",
            format!("at most {MAX_REDIRECT_URIS} redirect_uris"),
        ));
    }
    let mut redirect_uris = Vec::new();
    for uri in uris {
        let uri = uri.as_str().unwrap_or("");
        if !redirect_uri_allowed(uri) {
            return Err((
                "invalid_redirect_uri",
                format!(
                    "redirect URI {:?} is not allowed: use https, or http on 127.0.0.1, localhost or [::1]; no fragment",
                    uri.chars().take(200).collect::<String>()
                ),
            ));
        }
        redirect_uris.push(uri.to_string());
    }
    let default_method = if document {
        "none"
    } else {
        "client_secret_basic"
    };
    let method_text = match metadata.get("token_endpoint_auth_method") {
        None => default_method,
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return Err(bad("token_endpoint_auth_method must be a string".into())),
    };
    let auth_method = ClientAuthMethod::parse(method_text).ok_or_else(|| {
        bad(format!(
            "token_endpoint_auth_method {method_text:?} is not supported: use none, client_secret_post or client_secret_basic"
        ))
    })?;
    if document && auth_method != ClientAuthMethod::None {
        return Err(bad(
            "a client metadata document client cannot use a client secret: use token_endpoint_auth_method none".into(),
        ));
    }
    let strings = |field: &str, default: &[&str]| -> Result<Vec<String>, (&'static str, String)> {
        match metadata.get(field) {
            None => Ok(default.iter().map(|s| s.to_string()).collect()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(format!("{field} must be an array of strings"))),
            Some(_) => Err(bad(format!("{field} must be an array of strings"))),
        }
    };
    let grant_types = strings("grant_types", &["authorization_code"])?;
    if let Some(other) = grant_types
        .iter()
        .find(|g| *g != "authorization_code" && *g != "refresh_token")
    {
        return Err(bad(format!(
            "grant type {other:?} is not supported: authorization_code and refresh_token only"
        )));
    }
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(bad("grant_types must include authorization_code".into()));
    }
    let response_types = strings("response_types", &["code"])?;
    if response_types.iter().any(|r| r != "code") {
        return Err(bad("response_types must be [\"code\"]".into()));
    }
    let name = match metadata.get("client_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.trim().to_string()),
        Some(_) => return Err(bad("client_name must be a string".into())),
    };
    let name = match name {
        Some(name) if name.chars().count() > 100 => {
            return Err(bad("client_name is longer than 100 characters".into()))
        }
        Some(name) if !name.is_empty() => name
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
        _ => split_url(&redirect_uris[0])
            .map(|u| u.host.to_string())
            .unwrap_or_else(|| "an unnamed app".into()),
    };
    Ok(ClientMetadata {
        name,
        redirect_uris,
        auth_method,
        refresh: grant_types.iter().any(|g| g == "refresh_token"),
    })
}

/// A Client ID Metadata Document URL: https, with a path, nothing to interpret.
fn document_client_id(id: &str) -> bool {
    id.len() <= MAX_URI_LEN
        && split_url(id).is_some_and(|u| {
            u.scheme == "https"
                && u.path_and_query.starts_with('/')
                && u.path_and_query.len() > 1
                && !u
                    .path_and_query
                    .split(['/', '?'])
                    .any(|seg| seg == "." || seg == "..")
        })
}

// ── The server ───────────────────────────────────────────────────────────────────────────────

struct OAuth {
    mode: OAuthMode,
    issuer: String,
    /// The canonical resource (`issuer/mcp`): the audience of every access token.
    resource: String,
    access_ttl_s: u64,
    refresh_ttl_s: u64,
    secure_cookies: bool,
    client_ip_header: Option<String>,
    database: String,
    /// MCP_OAUTH_KEY_FILE's keys, re-read when the file changes (see housekeeping).
    key_ring: RwLock<KeyRing>,
    key_file: Option<String>,
    key_file_mtime: Mutex<Option<SystemTime>>,
    ledger: OnceLedger,
    throttle: Throttle,
    documents: DocumentCache,
    limits: OAuthLimits,
    /// When each table last logged that it was full (at most once a minute each).
    full_logged: Mutex<BTreeMap<&'static str, Instant>>,
    fetch: Fetcher,
    oidc: Option<Oidc>,
    counters: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

/// The requested authorization, checked: what a sign-in page carries (signed) to its POST.
#[derive(Clone, Debug)]
struct GrantRequest {
    client: ClientInfo,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: String,
    scope: String,
    resource: String,
}

/// What stops an authorization request: an error page when the redirect URI cannot be trusted,
/// else an RFC 6749 §4.1.2.1 error sent back to the client.
enum AuthorizeError {
    Page(Response),
    Redirect(Response),
}

impl OAuth {
    fn new(config: &OAuthConfig, server: &Config) -> Result<OAuth, String> {
        let (secrets, generated) = match &config.key_file {
            Some(path) => (read_key_file(path)?, false),
            None => (vec![random_bytes::<32>()?.to_vec()], true),
        };
        if generated {
            log_event(
                "warn",
                "MCP_OAUTH_KEY_FILE not set: generated a signing key for this process only, so OAuth tokens die with the \
                 process (analysts sign in again after a restart) and replicas do not accept each other's tokens",
                &[],
            );
        }
        let database = server
            .database
            .base
            .get_dbname()
            .map_or_else(|| "analytics".into(), String::from);
        Ok(OAuth {
            mode: config.mode,
            issuer: config.public_url.clone(),
            resource: format!("{}/mcp", config.public_url),
            access_ttl_s: config.access_ttl_s,
            refresh_ttl_s: config.refresh_ttl_s,
            secure_cookies: config.public_url.starts_with("https://"),
            client_ip_header: config.client_ip_header.clone(),
            database,
            key_ring: RwLock::new(KeyRing::new(secrets)?),
            key_file: config.key_file.clone(),
            key_file_mtime: Mutex::new(
                config
                    .key_file
                    .as_ref()
                    .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()),
            ),
            ledger: OnceLedger::new(&config.limits),
            throttle: Throttle::new(config.limits.addresses),
            documents: DocumentCache::new(config.limits.documents),
            limits: config.limits.clone(),
            full_logged: Mutex::new(BTreeMap::new()),
            fetch: Fetcher::new(config)?,
            oidc: config.oidc.clone().map(Oidc::new),
            counters: Mutex::new(BTreeMap::new()),
        })
    }

    fn describe(&self) -> &'static str {
        match self.mode {
            OAuthMode::Token => "bearer tokens + OAuth (sign in with the personal token)",
            OAuthMode::Oidc => "bearer tokens + OAuth (sign in at the identity provider)",
        }
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, KeyRing> {
        self.key_ring.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads MCP_OAUTH_KEY_FILE when its mtime changes, so keys rotate without a restart; a
    /// bad file keeps the keys we have and says why.
    fn reload_keys_if_changed(&self) {
        let Some(path) = &self.key_file else { return };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if mtime == *lock(&self.key_file_mtime) {
            return;
        }
        *lock(&self.key_file_mtime) = mtime;
        match read_key_file(path).and_then(KeyRing::new) {
            Ok(ring) => {
                let count = ring.keys.len().to_string();
                let signing = ring.keys.first().map(|k| k.kid.clone()).unwrap_or_default();
                *self.key_ring.write().unwrap_or_else(|e| e.into_inner()) = ring;
                log_event(
                    "info",
                    "oauth keys loaded",
                    &[
                        ("source", path),
                        ("keys", &count),
                        ("signing_kid", &signing),
                    ],
                );
            }
            Err(e) => log_event(
                "warn",
                "oauth key file not reloaded, keeping the previous keys",
                &[("error", &e)],
            ),
        }
    }

    fn count(&self, family: &'static str, label: &'static str) {
        *lock(&self.counters).entry((family, label)).or_insert(0) += 1;
    }

    /// A table reached its cap and made room as its policy says: counted every time, logged at
    /// most once a minute per table (an attack must not flood the log either).
    fn table_full(&self, table: &'static str, what: &str) {
        self.count("mcp_oauth_tables_full_total", table);
        let mut logged = lock(&self.full_logged);
        if logged
            .get(table)
            .is_some_and(|at| at.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        logged.insert(table, Instant::now());
        let (variable, cap) = match table {
            "codes" => ("MCP_OAUTH_MAX_CODES", self.limits.codes),
            "sign_ins" => ("MCP_OAUTH_MAX_SIGN_INS", self.limits.sign_ins),
            "addresses" => ("MCP_OAUTH_MAX_ADDRESSES", self.limits.addresses),
            _ => ("MCP_OAUTH_MAX_CLIENT_DOCUMENTS", self.limits.documents),
        };
        log_event(
            "warn",
            &format!("oauth: the {table} table is full ({variable}={cap}): {what}"),
            &[("table", table)],
        );
    }

    /// Where the sign-in a refresh or access token belongs to sits in the ledger.
    fn sign_in_key(claims: &Map<String, Value>) -> TableKey {
        (
            claims.get("fms").and_then(Value::as_u64).unwrap_or(0),
            table_id(claim(claims, "fid")),
        )
    }

    /// Counts a failed sign-in from `address` against the throttle.
    fn sign_in_failed(&self, address: IpAddr) {
        if self.throttle.record_failure(address) {
            self.table_full(
                "addresses",
                "failed sign-ins from addresses not in it share one allowance of ten per ten minutes",
            );
        }
    }

    /// Background loop: forget expired single-use records and throttle windows; re-read the key
    /// file and the allow-list file when they change.
    fn housekeeping(&self) {
        let mut last_sweep = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(500));
            self.reload_keys_if_changed();
            if let Some(oidc) = &self.oidc {
                oidc.reload_allow_file_if_changed();
            }
            if last_sweep.elapsed() >= Duration::from_secs(30) {
                self.ledger.forget_expired();
                self.throttle.forget_expired();
                self.documents.forget_expired();
                last_sweep = Instant::now();
            }
        }
    }

    /// The browser's address, for the sign-in throttle: the peer, or behind a proxy the last
    /// address of MCP_OAUTH_CLIENT_IP_HEADER (the one the proxy itself appended).
    fn client_address(&self, request: &Request) -> IpAddr {
        let from_header = self.client_ip_header.as_ref().and_then(|name| {
            request
                .header(name)
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        });
        from_header
            .or(request.peer)
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn metadata_url(&self, path: &str) -> String {
        if path == "/" {
            format!("{}/.well-known/oauth-protected-resource", self.issuer)
        } else {
            format!("{}/.well-known/oauth-protected-resource/mcp", self.issuer)
        }
    }

    // ── the resource server ──

    /// An OAuth access token in `header`, verified and re-checked against who may still sign
    /// in. Called only after the header matched no configured bearer token.
    fn authenticate(&self, header: Option<&str>, auth: &Auth) -> Result<Caller, Refusal> {
        let presented = header.and_then(bearer_credential).ok_or(Refusal::Missing)?;
        let claims = self
            .keys()
            .verify(Purpose::Access, presented, &self.issuer, &self.resource)
            .map_err(Refusal::InvalidToken)?;
        if self.ledger.sign_in_ended(OAuth::sign_in_key(&claims)) {
            return Err(Refusal::InvalidToken(
                "the sign-in this token belongs to was revoked or has ended",
            ));
        }
        let name = claim(&claims, "sub");
        if !self.grant_still_valid(name, claim(&claims, "g"), auth) {
            return Err(Refusal::InvalidToken(
                "the analyst is no longer allowed on this server",
            ));
        }
        if !claim(&claims, "scope").split(' ').any(|s| s == SCOPE_MCP) {
            return Err(Refusal::InsufficientScope);
        }
        Ok(Caller {
            name: name.to_string(),
            via: "oauth",
            client: Some(claim(&claims, "cn").to_string()),
        })
    }

    /// Whether the analyst behind a grant may still be served: in token mode they still hold
    /// the token they signed in with; in oidc mode their e-mail is still allowed.
    fn grant_still_valid(&self, name: &str, grant: &str, auth: &Auth) -> bool {
        match (grant.split_once(':'), &self.oidc) {
            (Some(("t", fingerprint)), _) => auth.still_holds(name, fingerprint),
            (Some(("e", email)), Some(oidc)) => oidc.email_allowed(email),
            _ => false,
        }
    }

    fn refusal_response(&self, refusal: &Refusal, path: &str) -> Response {
        let metadata = self.metadata_url(path);
        let (status, challenge, message) = match refusal {
            Refusal::Missing => (
                401,
                format!(r#"Bearer resource_metadata="{metadata}", scope="{SCOPE_MCP}""#),
                "unauthorized: sign in (OAuth) or send Authorization: Bearer <token>".to_string(),
            ),
            Refusal::InvalidToken(why) => (
                401,
                format!(
                    r#"Bearer error="invalid_token", error_description="{why}", resource_metadata="{metadata}", scope="{SCOPE_MCP}""#
                ),
                format!("unauthorized: {why}"),
            ),
            Refusal::InsufficientScope => (
                403,
                format!(
                    r#"Bearer error="insufficient_scope", scope="{SCOPE_MCP}", resource_metadata="{metadata}", error_description="the {SCOPE_MCP} scope is needed to use the tools""#
                ),
                format!("forbidden: the token lacks the {SCOPE_MCP} scope"),
            ),
        };
        Response::error(status, &message).with_header("WWW-Authenticate", challenge)
    }

    // ── clients ──

    fn resolve_client(&self, id: &str) -> Result<ClientInfo, ClientError> {
        if id.starts_with("https://") {
            return self.client_document(id);
        }
        let claims = self
            .keys()
            .verify(Purpose::Client, id, &self.issuer, &self.issuer)
            .map_err(|_| ClientError::Unknown)?;
        let redirect_uris = claims
            .get("r")
            .and_then(Value::as_array)
            .map(|uris| {
                uris.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(ClientInfo {
            id: id.to_string(),
            name: claim(&claims, "n").to_string(),
            redirect_uris,
            auth_method: ClientAuthMethod::parse(claim(&claims, "m"))
                .ok_or(ClientError::Unknown)?,
            refresh: claims.get("rt").and_then(Value::as_bool).unwrap_or(false),
            document: false,
        })
    }

    /// A Client ID Metadata Document client: fetched (SSRF-guarded, see Fetcher), checked, and
    /// cached for CLIENT_DOCUMENT_CACHE_S.
    fn client_document(&self, url: &str) -> Result<ClientInfo, ClientError> {
        if let Some(client) = self.documents.get(url) {
            return Ok(client);
        }
        if !document_client_id(url) {
            return Err(ClientError::Document(
                "a client_id URL must be https with a path, at most 2000 characters, and no fragment, credentials or dot segments".into(),
            ));
        }
        let fetched = self.fetch.client_document(url);
        self.count(
            "mcp_oauth_client_documents_total",
            if fetched.is_ok() { "fetched" } else { "failed" },
        );
        let body = fetched.map_err(ClientError::Document)?;
        let metadata: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
            ClientError::Document(format!(
                "the client metadata document is not a JSON object: {e}"
            ))
        })?;
        if metadata.get("client_id").and_then(Value::as_str) != Some(url) {
            return Err(ClientError::Document(
                "the client metadata document's client_id is not its own URL".into(),
            ));
        }
        let checked = client_from_metadata(&metadata, true).map_err(|(_, why)| {
            ClientError::Document(format!("client metadata document: {why}"))
        })?;
        let client = ClientInfo {
            id: url.to_string(),
            name: checked.name,
            redirect_uris: checked.redirect_uris,
            auth_method: checked.auth_method,
            refresh: checked.refresh,
            document: true,
        };
        if self.documents.insert(url, client.clone()) {
            self.table_full(
                "client_documents",
                "the document nearest its expiry was dropped (it is fetched again when needed)",
            );
        }
        Ok(client)
    }

    fn client_secret(&self, client_id: &str, key: &MasterKey) -> Result<String, String> {
        Ok(b64url(&hmac_sha256(
            &KeyRing::derived(key, Purpose::Client),
            format!("secret {client_id}").as_bytes(),
        )?))
    }

    fn client_secret_valid(&self, client_id: &str, presented: &str) -> bool {
        let presented = sha256(presented.as_bytes());
        let mut valid = false;
        for key in &self.keys().keys {
            if let Ok(secret) = self.client_secret(client_id, key) {
                valid |= constant_time_eq(&sha256(secret.as_bytes()), &presented);
            }
        }
        valid
    }
}

// ── Routing and metadata ─────────────────────────────────────────────────────────────────────

const OAUTH_PATHS: [&str; 9] = [
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-protected-resource/mcp",
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
    "/authorize",
    "/token",
    "/register",
    "/oauth/callback",
    "/oauth/style.css",
];

/// The OAuth endpoints; None for every other path (the MCP routes answer those).
fn oauth_route(app: &'static App, oauth: &OAuth, request: &Request) -> Option<Response> {
    let path = request.path.as_str();
    if !OAUTH_PATHS.contains(&path) {
        return None;
    }
    let method = request.method.as_str();
    let get_like = method == "GET" || method == "HEAD";
    let api = path.starts_with("/.well-known/") || path == "/token" || path == "/register";
    let response =
        match (method, path) {
            ("OPTIONS", _) if api => Response::empty(204)
                .with_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
                .with_header(
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, MCP-Protocol-Version",
                )
                .with_header("Access-Control-Max-Age", "600"),
            (_, "/.well-known/oauth-protected-resource") if get_like => {
                Response::json(200, oauth.resource_metadata(&oauth.issuer).to_string())
            }
            (_, "/.well-known/oauth-protected-resource/mcp") if get_like => {
                Response::json(200, oauth.resource_metadata(&oauth.resource).to_string())
            }
            (
                _,
                "/.well-known/oauth-authorization-server" | "/.well-known/openid-configuration",
            ) if get_like => Response::json(200, oauth.server_metadata().to_string()),
            (_, "/oauth/style.css") if get_like => {
                Response::new(200, "text/css; charset=utf-8", PAGE_CSS.as_bytes().to_vec())
            }
            ("GET" | "HEAD", "/authorize") => oauth.authorize_get(request),
            ("POST", "/authorize") => oauth.authorize_post(app, request),
            ("POST", "/token") => oauth.token(app, request),
            ("POST", "/register") => oauth.register(request),
            ("GET" | "HEAD", "/oauth/callback") => oauth.provider_callback(request),
            (
                "POST",
                "/.well-known/oauth-protected-resource"
                | "/.well-known/oauth-protected-resource/mcp"
                | "/.well-known/oauth-authorization-server"
                | "/.well-known/openid-configuration"
                | "/oauth/style.css"
                | "/oauth/callback",
            ) => Response::error(405, "this endpoint accepts GET only")
                .with_header("Allow", "GET, HEAD"),
            (_, "/token" | "/register") => {
                Response::error(405, "this endpoint accepts POST only").with_header("Allow", "POST")
            }
            _ => Response::error(405, "method not allowed").with_header("Allow", "GET, POST"),
        };
    Some(if api {
        response.with_header("Access-Control-Allow-Origin", "*")
    } else {
        response
    })
}

impl OAuth {
    /// RFC 9728. `resource` is the origin for the root document, `/mcp` for the path-specific
    /// one, so a client that connected to either URL finds a resource that covers it.
    fn resource_metadata(&self, resource: &str) -> Value {
        json!({
            "resource": resource,
            "authorization_servers": [self.issuer],
            "scopes_supported": [SCOPE_MCP],
            "bearer_methods_supported": ["header"],
            "resource_name": "Analytics (read-only PostgreSQL)",
        })
    }

    /// RFC 8414 (also served as openid-configuration: some clients only look there).
    fn server_metadata(&self) -> Value {
        let issuer = &self.issuer;
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "registration_endpoint": format!("{issuer}/register"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
            "scopes_supported": SUPPORTED_SCOPES,
            "authorization_response_iss_parameter_supported": true,
            "client_id_metadata_document_supported": true,
        })
    }

    // ── /register (RFC 7591) ──

    /// Registration is stateless: the client id is a token we sign holding the client's
    /// metadata, and a confidential client's secret is an HMAC of its id. Any replica with the
    /// key file knows every client; nothing grows with the number of registrations.
    fn register(&self, request: &Request) -> Response {
        let error = |code: &str, description: &str| {
            self.count("mcp_oauth_registrations_total", "refused");
            Response::json(
                400,
                json!({ "error": code, "error_description": description }).to_string(),
            )
        };
        if request.body.len() > REGISTRATION_MAX_BYTES {
            return error(
                "invalid_client_metadata",
                &format!(
                    "registration request larger than {} KiB",
                    REGISTRATION_MAX_BYTES / 1024
                ),
            );
        }
        let Ok(Value::Object(metadata)) = serde_json::from_slice::<Value>(&request.body) else {
            return error(
                "invalid_client_metadata",
                "the registration request must be a JSON object",
            );
        };
        let ClientMetadata {
            name,
            redirect_uris,
            auth_method,
            refresh,
        } = match client_from_metadata(&metadata, false) {
            Ok(checked) => checked,
            Err((code, why)) => return error(code, &why),
        };
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("aud".into(), json!(self.issuer));
        // Client ids do not expire (RFC 7591 §3.2.1 allows it); a retired key retires them.
        claims.insert("exp".into(), json!(u64::from(u32::MAX) * 2));
        claims.insert("n".into(), json!(name));
        claims.insert("r".into(), json!(redirect_uris));
        claims.insert("m".into(), json!(auth_method.label()));
        claims.insert("rt".into(), json!(refresh));
        // Unique per registration: two apps registering the same metadata must not share an id.
        match random_bytes::<12>() {
            Ok(id) => claims.insert("jti".into(), json!(hex(&id))),
            Err(e) => return self.server_error_json(&e),
        };
        let client_id = match self.keys().sign(Purpose::Client, claims) {
            Ok(id) => id,
            Err(e) => return self.server_error_json(&e),
        };
        let mut grant_types = vec!["authorization_code"];
        if refresh {
            grant_types.push("refresh_token");
        }
        let mut answer = json!({
            "client_id": client_id,
            "client_id_issued_at": now_s(),
            "client_name": name,
            "redirect_uris": redirect_uris,
            "grant_types": grant_types,
            "response_types": ["code"],
            "token_endpoint_auth_method": auth_method.label(),
        });
        if auth_method != ClientAuthMethod::None {
            let Some(key) = self.keys().keys.first().cloned() else {
                return self.server_error_json("no signing key");
            };
            match self.client_secret(&client_id, &key) {
                Ok(secret) => {
                    answer["client_secret"] = json!(secret);
                    answer["client_secret_expires_at"] = json!(0);
                }
                Err(e) => return self.server_error_json(&e),
            }
        }
        self.count("mcp_oauth_registrations_total", "registered");
        log_event(
            "info",
            "oauth client registered",
            &[("client", &name), ("auth", auth_method.label())],
        );
        Response::json(201, answer.to_string())
    }

    fn server_error_json(&self, why: &str) -> Response {
        log_event("error", "oauth: internal error", &[("error", why)]);
        Response::json(
            500,
            json!({ "error": "server_error", "error_description": "internal error; it was logged" }).to_string(),
        )
    }

    // ── /authorize ──

    /// Checks an authorization request (from the query of GET /authorize or the signed state
    /// of the sign-in page). Until the redirect URI is known to be registered, every problem is
    /// an error page: we never send a browser to a URI we cannot vouch for.
    fn check_authorization_request(
        &self,
        params: &BTreeMap<String, String>,
    ) -> Result<GrantRequest, AuthorizeError> {
        let page = |status: u16, title: &str, message: &str| {
            AuthorizeError::Page(error_page(status, title, message))
        };
        let client_id = params.get("client_id").map(String::as_str).unwrap_or("");
        if client_id.is_empty() {
            return Err(page(
                400,
                "This sign-in link is incomplete",
                "The app that sent you here did not say who it is (client_id is missing). Go back to the app and connect again.",
            ));
        }
        let client = match self.resolve_client(client_id) {
            Ok(client) => client,
            Err(ClientError::Unknown) => {
                return Err(page(
                    400,
                    "This app is not registered here",
                    "The app's registration is unknown to this server (it may have been made with an older key). \
                     Remove the connector in the app and add it again, so it registers anew.",
                ))
            }
            Err(ClientError::Document(why)) => {
                return Err(page(
                    400,
                    "This app could not be verified",
                    &format!("This server could not read the app's client metadata document: {why}. Ask the app's developer, or try again later."),
                ))
            }
        };
        let redirect_uri = params.get("redirect_uri").map(String::as_str).unwrap_or("");
        if redirect_uri.is_empty() || !client.registered_redirect(redirect_uri) {
            return Err(page(
                400,
                "This sign-in link points somewhere unexpected",
                "The address this sign-in would return you to is not one the app registered, so this server will not send you there. \
                 If you started this from Claude, remove the connector and add it again; otherwise close this page.",
            ));
        }
        let state = params.get("state").cloned();
        let back = |error: &str, description: &str| {
            let mut query = vec![("error", error), ("error_description", description)];
            if let Some(state) = &state {
                query.push(("state", state.as_str()));
            }
            query.push(("iss", self.issuer.as_str()));
            // Not an automatic redirect: anyone can register a redirect URI, and a server that
            // bounces malformed requests straight to it is an open redirector (RFC 9700
            // §4.11.2). The analyst sees what went wrong and follows the link back if they wish.
            let back = with_query(redirect_uri, &query);
            let host = split_url(redirect_uri).map(|u| u.host).unwrap_or("the app");
            AuthorizeError::Redirect(error_page_with_link(
                400,
                "The app's sign-in request was refused",
                &format!("The app asked for something this server does not support ({error}: {description}). Nothing was signed in. Tell the app's developer, or remove the connector and add it again."),
                &back,
                &format!("Back to {host}"),
            ))
        };
        if params.get("response_type").map(String::as_str) != Some("code") {
            return Err(back(
                "unsupported_response_type",
                "response_type must be code",
            ));
        }
        let challenge = params
            .get("code_challenge")
            .map(String::as_str)
            .unwrap_or("");
        if challenge.len() != 43
            || !challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(back(
                "invalid_request",
                "PKCE is required: code_challenge must be the base64url SHA-256 of the code_verifier",
            ));
        }
        if params.get("code_challenge_method").map(String::as_str) != Some("S256") {
            return Err(back(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)",
            ));
        }
        let resource = match params.get("resource") {
            None => self.resource.clone(),
            Some(r) if self.resource_acceptable(r) => self.resource.clone(),
            Some(_) => {
                return Err(back(
                    "invalid_target",
                    "resource must be this server's MCP URL",
                ))
            }
        };
        let scope = match self.grantable_scope(params.get("scope").map(String::as_str)) {
            Some(scope) => scope,
            None => {
                return Err(back(
                    "invalid_scope",
                    &format!("supported scopes: {}", SUPPORTED_SCOPES.join(" ")),
                ))
            }
        };
        Ok(GrantRequest {
            client,
            redirect_uri: redirect_uri.to_string(),
            state,
            code_challenge: challenge.to_string(),
            scope,
            resource,
        })
    }

    /// The resource indicators that name this server (RFC 8707): its origin, or its MCP URL,
    /// with or without a trailing slash, scheme and host in any case (as MCP asks).
    fn resource_acceptable(&self, resource: &str) -> bool {
        let Some(url) = split_url(resource) else {
            return false;
        };
        let origin = format!(
            "{}://{}",
            url.scheme.to_ascii_lowercase(),
            url.authority.to_ascii_lowercase()
        );
        let path = url.path_and_query.trim_end_matches('/');
        origin == self.issuer && (path.is_empty() || path == "/mcp")
    }

    /// The requested scopes we support; "mcp" when none are requested; None when all requested
    /// are unknown.
    fn grantable_scope(&self, requested: Option<&str>) -> Option<String> {
        let requested: Vec<&str> = requested
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .collect();
        if requested.is_empty() {
            return Some(SCOPE_MCP.into());
        }
        let granted: Vec<&str> = SUPPORTED_SCOPES
            .into_iter()
            .filter(|s| requested.contains(s))
            .collect();
        (!granted.is_empty()).then(|| granted.join(" "))
    }

    fn authorize_get(&self, request: &Request) -> Response {
        // A request we must refuse with a page (unknown client, unverifiable client document,
        // unregistered redirect) counts as a failed sign-in: a client id URL makes us fetch a
        // document, and an address that keeps sending bad ones is stopped here.
        let address = self.client_address(request);
        if self.throttle.blocked(address) {
            return self.throttled_page();
        }
        let params = match parse_form(&request.query) {
            Ok(params) => params,
            Err(e) => {
                return error_page(
                    400,
                    "This sign-in link is damaged",
                    &format!("{e}. Go back to the app and connect again."),
                )
            }
        };
        match self.check_authorization_request(&params) {
            Err(AuthorizeError::Page(page)) => {
                self.sign_in_failed(address);
                page
            }
            Err(AuthorizeError::Redirect(response)) => response,
            Ok(grant) => self.sign_in_page(request, &grant, None, 200),
        }
    }

    /// The CSRF nonce of this browser: the one its cookie holds, or a new one.
    fn csrf_nonce(&self, request: &Request) -> Result<String, String> {
        match cookie(request, self.csrf_cookie_name()) {
            Some(n) if n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(n.to_string())
            }
            _ => random_hex::<16>(),
        }
    }

    fn csrf_cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            "__Host-amcp_csrf"
        } else {
            "amcp_csrf"
        }
    }

    fn csrf_cookie(&self, nonce: &str) -> String {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        format!(
            "{}={nonce}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SIGN_IN_TTL_S}{secure}",
            self.csrf_cookie_name()
        )
    }

    /// The signed state a sign-in page (or the provider round trip) carries.
    fn grant_claims(&self, grant: &GrantRequest, nonce: &str) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("aud".into(), json!(self.issuer));
        claims.insert("exp".into(), json!(now_s() + SIGN_IN_TTL_S));
        claims.insert("client_id".into(), json!(grant.client.id));
        claims.insert("redirect_uri".into(), json!(grant.redirect_uri));
        if let Some(state) = &grant.state {
            claims.insert("state".into(), json!(state));
        }
        claims.insert("code_challenge".into(), json!(grant.code_challenge));
        claims.insert("code_challenge_method".into(), json!("S256"));
        claims.insert("response_type".into(), json!("code"));
        claims.insert("scope".into(), json!(grant.scope));
        claims.insert("resource".into(), json!(grant.resource));
        claims.insert("csrf".into(), json!(nonce));
        claims
    }

    /// Back from signed state to the grant it describes, re-checked (the client may be gone).
    fn grant_from_claims(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<GrantRequest, AuthorizeError> {
        let params: BTreeMap<String, String> = claims
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
        self.check_authorization_request(&params)
    }

    fn sign_in_page(
        &self,
        request: &Request,
        grant: &GrantRequest,
        problem: Option<&str>,
        status: u16,
    ) -> Response {
        let nonce = match self.csrf_nonce(request) {
            Ok(nonce) => nonce,
            Err(e) => return self.internal_error_page(&e),
        };
        let state = match self
            .keys()
            .sign(Purpose::SignIn, self.grant_claims(grant, &nonce))
        {
            Ok(state) => state,
            Err(e) => return self.internal_error_page(&e),
        };
        let redirect = split_url(&grant.redirect_uri);
        let redirect_host = redirect.as_ref().map(|u| u.host).unwrap_or("the app");
        let mut form_targets = vec!["'self'".to_string()];
        form_targets.extend(origin_of(&grant.redirect_uri));
        let fields = match (&self.oidc, self.mode) {
            (Some(oidc), OAuthMode::Oidc) => {
                // The form's POST is answered with a redirect to the provider, which the CSP must
                // allow: its issuer's origin and (discovered now if need be) its login page's.
                form_targets.extend(origin_of(&oidc.config.issuer));
                let _ = oidc.endpoints(&self.fetch);
                form_targets.extend(oidc.authorization_origin());
                format!(
                    r#"<p class="hint">You sign in at <strong>{}</strong>; this server only learns your e-mail address.</p>
<div class="buttons"><button type="submit" name="action" value="allow" id="allow">Continue with {}</button>
<button type="submit" name="action" value="deny" id="deny" class="secondary">Deny</button></div>"#,
                    html_escape(&oidc.config.provider_name),
                    html_escape(&oidc.config.provider_name)
                )
            }
            _ => r#"<label for="token">Your personal access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" spellcheck="false" required autofocus>
<p class="hint">The token your administrator gave you for this server (the same one Claude Code uses). It is checked here and never shared with the app.</p>
<div class="buttons"><button type="submit" name="action" value="allow" id="allow">Allow</button>
<button type="submit" name="action" value="deny" id="deny" class="secondary" formnovalidate>Deny</button></div>"#
                .to_string(),
        };
        let problem = problem
            .map(|p| format!(r#"<p class="problem" role="alert">{}</p>"#, html_escape(p)))
            .unwrap_or_default();
        let verified = if grant.client.document {
            format!(
                r#"<li>The app is identified by <code>{}</code>.</li>"#,
                html_escape(&grant.client.id)
            )
        } else {
            String::new()
        };
        let body = PAGE_SIGN_IN
            .replace("{{client}}", &html_escape(&grant.client.name))
            .replace("{{database}}", &html_escape(&self.database))
            .replace("{{redirect_host}}", &html_escape(redirect_host))
            .replace("{{redirect_uri}}", &html_escape(&grant.redirect_uri))
            .replace("{{verified}}", &verified)
            .replace("{{problem}}", &problem)
            .replace("{{state}}", &html_escape(&state))
            .replace("{{fields}}", &fields)
            .replace(
                "{{ends}}",
                match self.mode {
                    OAuthMode::Token => {
                        "Access ends when your administrator removes you or replaces your token."
                    }
                    OAuthMode::Oidc => {
                        "Access ends when your administrator removes you from this server's analysts."
                    }
                },
            );
        page_response(status, body, &form_targets.join(" "))
            .with_header("Set-Cookie", self.csrf_cookie(&nonce))
    }

    fn throttled_page(&self) -> Response {
        self.count("mcp_oauth_sign_ins_total", "throttled");
        error_page(
            429,
            "Too many failed sign-ins",
            "There were too many failed sign-ins from your network address. Wait 10 minutes, then try again \
             (with the personal token your administrator gave you, or your work account).",
        )
        .with_header("Retry-After", THROTTLE_WINDOW.as_secs().to_string())
    }

    fn internal_error_page(&self, why: &str) -> Response {
        log_event("error", "oauth: internal error", &[("error", why)]);
        error_page(
            500,
            "Something went wrong on the server",
            "The sign-in could not be completed because of a server error (it was logged). Try again in a minute; if it keeps happening, tell your administrator.",
        )
    }

    /// The sign-in page's form: CSRF check, throttle, then Deny, or the personal token, or off
    /// to the identity provider.
    fn authorize_post(&self, app: &App, request: &Request) -> Response {
        let form = match std::str::from_utf8(&request.body)
            .map_err(|_| "the form is not UTF-8".to_string())
            .and_then(parse_form)
        {
            Ok(form) => form,
            Err(e) => {
                return error_page(
                    400,
                    "The sign-in form was damaged",
                    &format!("{e}. Go back to the app and connect again."),
                )
            }
        };
        let claims = match self.keys().verify(
            Purpose::SignIn,
            form.get("state").map(String::as_str).unwrap_or(""),
            &self.issuer,
            &self.issuer,
        ) {
            Ok(claims) => claims,
            Err(_) => {
                self.count("mcp_oauth_sign_ins_total", "expired_page");
                return error_page(
                    400,
                    "This sign-in page is no longer valid",
                    "It was open for more than 10 minutes, or it was changed. Go back to Claude (or the app you came from) and connect again.",
                );
            }
        };
        let address = self.client_address(request);
        if !self.csrf_matches(request, &claims) {
            self.count("mcp_oauth_sign_ins_total", "csrf");
            self.sign_in_failed(address);
            return error_page(
                403,
                "This sign-in could not be verified",
                "Your browser did not send this page's security check (a cookie), so nothing was signed in. \
                 Make sure cookies are allowed for this site, then go back to the app and connect again.",
            );
        }
        let grant = match self.grant_from_claims(&claims) {
            Ok(grant) => grant,
            Err(AuthorizeError::Page(page)) | Err(AuthorizeError::Redirect(page)) => return page,
        };
        if self.throttle.blocked(address) {
            return self.throttled_page();
        }
        if form.get("action").map(String::as_str) != Some("allow") {
            self.count("mcp_oauth_sign_ins_total", "denied");
            return self.redirect_error(&grant, "access_denied", "the analyst denied access");
        }
        match self.mode {
            OAuthMode::Token => {
                let secret = form.get("token").map(String::as_str).unwrap_or("");
                match app
                    .auth
                    .lookup(secret)
                    .filter(|_| !secret.trim().is_empty())
                {
                    Some((name, digest)) => {
                        self.count("mcp_oauth_sign_ins_total", "ok");
                        log_event(
                            "info",
                            "oauth sign-in",
                            &[
                                ("caller", &name),
                                ("client", &grant.client.name),
                                ("via", "token"),
                            ],
                        );
                        self.issue_code(&grant, &name, &format!("t:{}", grant_fingerprint(&digest)))
                    }
                    None => {
                        self.count("mcp_oauth_sign_ins_total", "bad_token");
                        self.sign_in_failed(address);
                        log_event(
                            "warn",
                            "oauth sign-in refused: wrong token",
                            &[
                                ("address", &address.to_string()),
                                ("client", &grant.client.name),
                            ],
                        );
                        self.sign_in_page(
                            request,
                            &grant,
                            Some("That token is not valid here. Check that you pasted all of it, without spaces; if it still fails, ask your administrator for a new one."),
                            401,
                        )
                    }
                }
            }
            OAuthMode::Oidc => self.send_to_provider(request, &grant),
        }
    }

    fn csrf_matches(&self, request: &Request, claims: &Map<String, Value>) -> bool {
        let expected = claim(claims, "csrf");
        let presented = cookie(request, self.csrf_cookie_name()).unwrap_or("");
        !expected.is_empty()
            && constant_time_eq(&sha256(expected.as_bytes()), &sha256(presented.as_bytes()))
    }

    fn redirect_error(&self, grant: &GrantRequest, error: &str, description: &str) -> Response {
        let mut query = vec![("error", error), ("error_description", description)];
        if let Some(state) = &grant.state {
            query.push(("state", state.as_str()));
        }
        query.push(("iss", self.issuer.as_str()));
        Response::redirect(303, &with_query(&grant.redirect_uri, &query))
    }

    /// Our authorization code for a signed-in analyst (`grant_basis`: how the grant stays
    /// revocable, see grant_still_valid), sent to the client's redirect URI with state and iss.
    fn issue_code(&self, grant: &GrantRequest, name: &str, grant_basis: &str) -> Response {
        let Ok(id) = random_bytes::<16>() else {
            return self.internal_error_page("no randomness for a code id");
        };
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("aud".into(), json!(self.issuer));
        claims.insert("exp".into(), json!(now_s() + CODE_TTL_S));
        claims.insert("jti".into(), json!(hex(&id)));
        // When it was issued, in ms: where its single-use record sits in the ledger.
        claims.insert("ms".into(), json!(now_ms()));
        claims.insert("sub".into(), json!(name));
        claims.insert("g".into(), json!(grant_basis));
        claims.insert("client_id".into(), json!(grant.client.id));
        claims.insert("redirect_uri".into(), json!(grant.redirect_uri));
        claims.insert("code_challenge".into(), json!(grant.code_challenge));
        claims.insert("scope".into(), json!(grant.scope));
        claims.insert("resource".into(), json!(grant.resource));
        let code = match self.keys().sign(Purpose::Code, claims) {
            Ok(code) => code,
            Err(e) => return self.internal_error_page(&e),
        };
        let mut query = vec![("code", code.as_str())];
        if let Some(state) = &grant.state {
            query.push(("state", state.as_str()));
        }
        query.push(("iss", self.issuer.as_str()));
        Response::redirect(303, &with_query(&grant.redirect_uri, &query))
            .with_header("Referrer-Policy", "no-referrer")
    }

    // ── /token ──

    fn token(&self, app: &App, request: &Request) -> Response {
        match self.token_exchange(app, request) {
            Ok(answer) => Response::json(200, answer.to_string()).with_header("Pragma", "no-cache"),
            Err(error) => {
                self.count("mcp_oauth_token_errors_total", error.code);
                let mut response = Response::json(
                    error.status,
                    json!({ "error": error.code, "error_description": error.description })
                        .to_string(),
                );
                if error.status == 401 {
                    response =
                        response.with_header("WWW-Authenticate", r#"Basic realm="analytics-mcp""#);
                }
                response
            }
        }
    }

    fn token_exchange(&self, app: &App, request: &Request) -> Result<Value, TokenError> {
        let form = std::str::from_utf8(&request.body)
            .map_err(|_| TokenError::request("the body is not UTF-8"))
            .and_then(|body| parse_form(body).map_err(|e| TokenError::request(&e)))?;
        let client = self.authenticate_client(request, &form)?;
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => self.redeem_code(app, &client, &form),
            Some("refresh_token") => self.redeem_refresh(app, &client, &form),
            None => Err(TokenError::request("grant_type is required")),
            Some(_) => Err(TokenError::new(
                400,
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )),
        }
    }

    /// RFC 6749 §2.3: a public client names itself; a confidential one proves it with its
    /// secret (Basic or in the form).
    fn authenticate_client(
        &self,
        request: &Request,
        form: &BTreeMap<String, String>,
    ) -> Result<ClientInfo, TokenError> {
        let basic = request
            .header("authorization")
            .and_then(|h| {
                h.trim()
                    .strip_prefix("Basic ")
                    .or_else(|| h.trim().strip_prefix("basic "))
            })
            .map(|encoded| {
                base64_decode(encoded.trim())
                    .and_then(|raw| String::from_utf8(raw).ok())
                    .and_then(|pair| {
                        let (id, secret) = pair.split_once(':')?;
                        Some((percent_decode(id)?, percent_decode(secret)?))
                    })
                    .ok_or_else(|| TokenError::client("the Basic credentials are malformed"))
            })
            .transpose()?;
        let (client_id, secret) = match (basic, form.get("client_id"), form.get("client_secret")) {
            (Some(_), _, Some(_)) => return Err(TokenError::request(
                "send the client secret once: in the Authorization header or in the form, not both",
            )),
            (Some((id, _)), Some(form_id), _) if &id != form_id => {
                return Err(TokenError::request(
                    "client_id differs from the Basic credentials",
                ))
            }
            (Some((id, secret)), _, _) => (id, Some(secret)),
            (None, Some(id), secret) => (id.clone(), secret.cloned()),
            (None, None, _) => return Err(TokenError::client("client_id is required")),
        };
        let client = self.resolve_client(&client_id).map_err(|e| match e {
            ClientError::Unknown => TokenError::client("unknown client: register again"),
            ClientError::Document(why) => TokenError::client(&why),
        })?;
        if client.auth_method != ClientAuthMethod::None {
            let valid = secret
                .as_deref()
                .is_some_and(|s| self.client_secret_valid(&client.id, s));
            if !valid {
                return Err(TokenError::client("client authentication failed"));
            }
        }
        Ok(client)
    }

    fn redeem_code(
        &self,
        app: &App,
        client: &ClientInfo,
        form: &BTreeMap<String, String>,
    ) -> Result<Value, TokenError> {
        let code = form
            .get("code")
            .ok_or_else(|| TokenError::request("code is required"))?;
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| TokenError::request("code_verifier is required (PKCE)"))?;
        let claims = self
            .keys()
            .verify(Purpose::Code, code, &self.issuer, &self.issuer)
            .map_err(|_| TokenError::grant("the authorization code is invalid or expired"))?;
        if claim(&claims, "client_id") != client.id {
            return Err(TokenError::grant(
                "the authorization code was issued to another client",
            ));
        }
        let key = (
            claims.get("ms").and_then(Value::as_u64).unwrap_or(0),
            table_id(claim(&claims, "jti")),
        );
        let until = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        match self.ledger.use_code(key, until) {
            CodeUse::First => {}
            CodeUse::FirstMadeRoom => self.table_full(
                "codes",
                "the oldest redeemed code was let go; codes issued before it are refused (their analysts sign in again)",
            ),
            CodeUse::AlreadyUsed => {
                log_event(
                    "warn",
                    "oauth: authorization code used twice",
                    &[("client", &client.name), ("caller", claim(&claims, "sub"))],
                );
                return Err(TokenError::grant("the authorization code was already used"));
            }
            CodeUse::Forgotten => {
                return Err(TokenError::grant(
                    "the authorization code is older than this server can check under the current load: sign in again",
                ))
            }
        }
        if form.get("redirect_uri").map(String::as_str) != Some(claim(&claims, "redirect_uri")) {
            return Err(TokenError::grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        if !pkce_verifier_matches(verifier, claim(&claims, "code_challenge")) {
            return Err(TokenError::grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        if form
            .get("resource")
            .is_some_and(|r| !self.resource_acceptable(r))
        {
            return Err(TokenError::new(
                400,
                "invalid_target",
                "resource must be this server's MCP URL",
            ));
        }
        let name = claim(&claims, "sub");
        let grant = claim(&claims, "g");
        if !self.grant_still_valid(name, grant, &app.auth) {
            return Err(TokenError::grant(
                "the analyst is no longer allowed on this server",
            ));
        }
        let sign_in = SignInTokens {
            family: random_hex::<12>().map_err(|e| TokenError::server(&e))?,
            since_ms: now_ms(),
            generation: 0,
            end: now_s() + self.refresh_ttl_s,
        };
        let answer = self.issue_tokens(client, name, grant, claim(&claims, "scope"), &sign_in)?;
        self.count("mcp_oauth_tokens_issued_total", "authorization_code");
        Ok(answer)
    }

    fn redeem_refresh(
        &self,
        app: &App,
        client: &ClientInfo,
        form: &BTreeMap<String, String>,
    ) -> Result<Value, TokenError> {
        let token = form
            .get("refresh_token")
            .ok_or_else(|| TokenError::request("refresh_token is required"))?;
        let claims = self
            .keys()
            .verify(Purpose::Refresh, token, &self.issuer, &self.issuer)
            .map_err(|_| {
                TokenError::grant("the refresh token is invalid or expired: sign in again")
            })?;
        if claim(&claims, "client_id") != client.id {
            return Err(TokenError::grant(
                "the refresh token was issued to another client",
            ));
        }
        let session_end = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let generation = claims.get("gen").and_then(Value::as_u64).unwrap_or(0);
        // The record outlives the last access token of the sign-in, so a revocation bites it.
        let until = session_end + self.access_ttl_s;
        match self
            .ledger
            .rotate(OAuth::sign_in_key(&claims), generation, until)
        {
            Rotation::Rotated { made_room: false } => {}
            Rotation::Rotated { made_room: true } => self.table_full(
                "sign_ins",
                "the oldest sign-in was ended, and with it every sign-in begun before it (their analysts sign in again)",
            ),
            Rotation::Revoked => {
                return Err(TokenError::grant("this sign-in was revoked: sign in again"))
            }
            Rotation::Ended => {
                return Err(TokenError::grant(
                    "this sign-in has ended (the server had to make room for newer ones): sign in again",
                ))
            }
            Rotation::Replayed => {
                // RFC 9700 §4.14.2: a rotated refresh token came back, so one of the two
                // holders is not the client. End the whole sign-in, its access tokens included.
                log_event(
                    "warn",
                    "oauth: refresh token replayed after rotation; sign-in revoked",
                    &[("client", &client.name), ("caller", claim(&claims, "sub"))],
                );
                return Err(TokenError::grant(
                    "the refresh token was already used; this sign-in is revoked: sign in again",
                ));
            }
        }
        let granted = claim(&claims, "scope");
        let scope = match form.get("scope") {
            None => granted.to_string(),
            Some(asked) => {
                if asked
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .any(|s| !granted.split(' ').any(|g| g == s))
                {
                    return Err(TokenError::new(
                        400,
                        "invalid_scope",
                        "a refresh cannot widen the granted scope",
                    ));
                }
                asked
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        if form
            .get("resource")
            .is_some_and(|r| !self.resource_acceptable(r))
        {
            return Err(TokenError::new(
                400,
                "invalid_target",
                "resource must be this server's MCP URL",
            ));
        }
        let name = claim(&claims, "sub");
        let grant = claim(&claims, "g");
        if !self.grant_still_valid(name, grant, &app.auth) {
            return Err(TokenError::grant(
                "the analyst is no longer allowed on this server",
            ));
        }
        let sign_in = SignInTokens {
            family: claim(&claims, "fid").to_string(),
            since_ms: claims.get("fms").and_then(Value::as_u64).unwrap_or(0),
            generation: generation + 1,
            end: session_end,
        };
        let answer = self.issue_tokens(client, name, grant, &scope, &sign_in)?;
        self.count("mcp_oauth_tokens_issued_total", "refresh_token");
        Ok(answer)
    }

    fn issue_tokens(
        &self,
        client: &ClientInfo,
        name: &str,
        grant: &str,
        scope: &str,
        sign_in: &SignInTokens,
    ) -> Result<Value, TokenError> {
        let session_end = sign_in.end;
        let now = now_s();
        let common = |audience: &str, exp: u64| -> Result<Map<String, Value>, TokenError> {
            let mut claims = Map::new();
            claims.insert("iss".into(), json!(self.issuer));
            claims.insert("aud".into(), json!(audience));
            claims.insert("sub".into(), json!(name));
            claims.insert("client_id".into(), json!(client.id));
            claims.insert("cn".into(), json!(client.name));
            claims.insert("scope".into(), json!(scope));
            claims.insert("g".into(), json!(grant));
            claims.insert("fid".into(), json!(sign_in.family));
            claims.insert("fms".into(), json!(sign_in.since_ms));
            claims.insert("exp".into(), json!(exp));
            claims.insert("iat".into(), json!(now));
            let id = random_bytes::<12>().map_err(|e| TokenError::server(&e))?;
            claims.insert("jti".into(), json!(hex(&id)));
            Ok(claims)
        };
        let access_exp = now + self.access_ttl_s;
        let access = self
            .keys()
            .sign(Purpose::Access, common(&self.resource, access_exp)?)
            .map_err(|e| TokenError::server(&e))?;
        let mut answer = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl_s,
            "scope": scope,
        });
        if client.refresh && self.refresh_ttl_s > 0 && session_end > now {
            let mut claims = common(&self.issuer, session_end)?;
            claims.insert("gen".into(), json!(sign_in.generation));
            let refresh = self
                .keys()
                .sign(Purpose::Refresh, claims)
                .map_err(|e| TokenError::server(&e))?;
            answer["refresh_token"] = json!(refresh);
        }
        Ok(answer)
    }
}

/// The sign-in (refresh-token family) tokens are issued for: its id, when it began (ms: where it
/// sits in the ledger), the generation of the refresh token to issue, and when it ends.
struct SignInTokens {
    family: String,
    since_ms: u64,
    generation: u64,
    end: u64,
}

/// An RFC 6749 §5.2 error of the token endpoint.
#[derive(Debug)]
struct TokenError {
    status: u16,
    code: &'static str,
    description: String,
}

impl TokenError {
    fn new(status: u16, code: &'static str, description: &str) -> TokenError {
        TokenError {
            status,
            code,
            description: description.to_string(),
        }
    }
    fn request(description: &str) -> TokenError {
        TokenError::new(400, "invalid_request", description)
    }
    fn client(description: &str) -> TokenError {
        TokenError::new(401, "invalid_client", description)
    }
    fn grant(description: &str) -> TokenError {
        TokenError::new(400, "invalid_grant", description)
    }
    fn server(why: &str) -> TokenError {
        log_event("error", "oauth: internal error", &[("error", why)]);
        TokenError::new(500, "server_error", "internal error; it was logged")
    }
}

// ── Pages ────────────────────────────────────────────────────────────────────────────────────
// Plain server-rendered HTML, no JavaScript, nothing from another origin. Every value is
// HTML-escaped where it is put in.

const PAGE_SIGN_IN: &str = include_str!("web/sign-in.html");
const PAGE_ERROR: &str = include_str!("web/error.html");
const PAGE_CSS: &str = include_str!("web/oauth.css");

/// A page with the headers every page carries: a CSP that allows our stylesheet and forms to
/// `form_targets` only (Chromium applies form-action to the redirect that follows a POST, so
/// the client's redirect origin and the identity provider are listed), never framed.
fn page_response(status: u16, body: String, form_targets: &str) -> Response {
    Response::html(status, body)
        .with_header(
            "Content-Security-Policy",
            format!(
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_targets}; \
                 frame-ancestors 'none'; base-uri 'none'"
            ),
        )
        .with_header("X-Frame-Options", "DENY")
        .with_header("Referrer-Policy", "no-referrer")
}

fn error_page(status: u16, title: &str, message: &str) -> Response {
    let body = PAGE_ERROR
        .replace("{{title}}", &html_escape(title))
        .replace("{{message}}", &html_escape(message))
        .replace("{{link}}", "");
    page_response(status, body, "'none'")
}

/// An error page with one link (back to a registered redirect URI, with the OAuth error).
fn error_page_with_link(
    status: u16,
    title: &str,
    message: &str,
    href: &str,
    label: &str,
) -> Response {
    let link = format!(
        r#"<p><a id="back" href="{}">{}</a></p>"#,
        html_escape(href),
        html_escape(label)
    );
    let body = PAGE_ERROR
        .replace("{{title}}", &html_escape(title))
        .replace("{{message}}", &html_escape(message))
        .replace("{{link}}", &link);
    page_response(status, body, "'none'")
}

// ── Signing in at the identity provider (OpenID Connect) ────────────────────────────────────
// Authorization code flow with our own PKCE, state and nonce. The provider's code is redeemed
// server-side; its ID token is verified (signature against its JWKS, refetched once when an
// unknown key id appears — key rotation; iss, aud, azp, exp, nonce) and its e-mail must be
// verified and allowed. Provider tokens go nowhere: the MCP client gets our code.

/// The provider's endpoints from its discovery document.
#[derive(Clone, Debug)]
struct ProviderEndpoints {
    authorization: String,
    token: String,
    jwks: String,
    /// Send the client secret with Basic (else in the form).
    basic_auth: bool,
}

/// Who may sign in: addresses, @domains, and !addresses refused even when their domain is allowed.
#[derive(Clone, Debug, Default, PartialEq)]
struct AllowList {
    emails: Vec<String>,
    domains: Vec<String>,
    denied: Vec<String>,
}

fn read_allow_file(path: &str) -> Result<AllowList, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut list = AllowList::default();
    for (number, line) in text.lines().enumerate() {
        let line = line
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if line.is_empty() {
            continue;
        }
        if let Some(denied) = line.strip_prefix('!') {
            list.denied.push(denied.trim().to_string());
        } else if let Some(domain) = line.strip_prefix('@') {
            list.domains.push(domain.trim().to_string());
        } else if line.contains('@') {
            list.emails.push(line);
        } else {
            return Err(format!(
                "{path} line {}: {line:?} is neither an address, an @domain nor a !address",
                number + 1
            ));
        }
    }
    Ok(list)
}

struct Oidc {
    config: OidcConfig,
    endpoints: Mutex<Option<(ProviderEndpoints, Instant)>>,
    jwks: Mutex<Option<(jsonwebtoken::jwk::JwkSet, Instant)>>,
    file: RwLock<AllowList>,
    /// The allow-list file's mtime when last read (None: not read yet).
    file_mtime: Mutex<Option<Option<SystemTime>>>,
}

impl Oidc {
    fn new(config: OidcConfig) -> Oidc {
        let oidc = Oidc {
            config,
            endpoints: Mutex::new(None),
            jwks: Mutex::new(None),
            file: RwLock::new(AllowList::default()),
            file_mtime: Mutex::new(None),
        };
        oidc.reload_allow_file_if_changed();
        oidc
    }

    fn reload_allow_file_if_changed(&self) {
        let Some(path) = &self.config.allowed_file else {
            return;
        };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if *lock(&self.file_mtime) == Some(mtime) {
            return;
        }
        *lock(&self.file_mtime) = Some(mtime);
        match read_allow_file(path) {
            Ok(list) => {
                let count =
                    (list.emails.len() + list.domains.len() + list.denied.len()).to_string();
                *self.file.write().unwrap_or_else(|e| e.into_inner()) = list;
                log_event(
                    "info",
                    "oidc allow-list loaded",
                    &[("source", path), ("entries", &count)],
                );
            }
            Err(e) => log_event(
                "warn",
                "oidc allow-list not reloaded, keeping the previous one",
                &[("error", &e)],
            ),
        }
    }

    /// Whether `email` may be served now (checked at sign-in and on every request).
    fn email_allowed(&self, email: &str) -> bool {
        self.allowed_by(email).is_some()
    }

    /// How `email` is allowed: Some(true) by its address, Some(false) by its domain, None not.
    fn allowed_by(&self, email: &str) -> Option<bool> {
        let email = email.to_ascii_lowercase();
        let file = self.file.read().unwrap_or_else(|e| e.into_inner());
        if file.denied.contains(&email) {
            return None;
        }
        if self.config.allowed_emails.contains(&email) || file.emails.contains(&email) {
            return Some(true);
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d)?;
        (self.config.allowed_domains.iter().any(|d| d == domain)
            || file.domains.iter().any(|d| d == domain))
        .then_some(false)
    }

    fn analyst_name(&self, email: &str) -> String {
        let email = email.to_ascii_lowercase();
        match self.config.name_from {
            NameFrom::Email => email,
            NameFrom::LocalPart => email.split('@').next().unwrap_or("").to_string(),
        }
    }

    /// The origin of the provider's authorization endpoint, once known (for the page's CSP).
    fn authorization_origin(&self) -> Option<String> {
        let endpoints = lock(&self.endpoints);
        let (endpoints, _) = endpoints.as_ref()?;
        origin_of(&endpoints.authorization)
    }

    /// The discovery document's endpoints, fetched on first use and hourly after.
    fn endpoints(&self, fetch: &Fetcher) -> Result<ProviderEndpoints, String> {
        if let Some((endpoints, at)) = lock(&self.endpoints).as_ref() {
            if at.elapsed() < Duration::from_secs(3600) {
                return Ok(endpoints.clone());
            }
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
        let document: Value = serde_json::from_slice(&fetch.provider_get(&url)?)
            .map_err(|e| format!("the provider's discovery document is not JSON: {e}"))?;
        if document
            .get("issuer")
            .and_then(Value::as_str)
            .map(|i| i.trim_end_matches('/'))
            != Some(self.config.issuer.as_str())
        {
            return Err("the provider's discovery document names another issuer".into());
        }
        let https = |field: &str| {
            document
                .get(field)
                .and_then(Value::as_str)
                .filter(|u| u.starts_with("https://"))
                .map(String::from)
                .ok_or_else(|| format!("the provider's discovery document has no https {field}"))
        };
        let methods: Vec<&str> = document
            .get("token_endpoint_auth_methods_supported")
            .and_then(Value::as_array)
            .map(|m| m.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let endpoints = ProviderEndpoints {
            authorization: https("authorization_endpoint")?,
            token: https("token_endpoint")?,
            jwks: https("jwks_uri")?,
            basic_auth: methods.is_empty() || methods.contains(&"client_secret_basic"),
        };
        *lock(&self.endpoints) = Some((endpoints.clone(), Instant::now()));
        Ok(endpoints)
    }

    /// The verification key for `kid`: from the cached JWKS, else from a fresh one (the
    /// provider rotated its keys), fetched at most once a second.
    fn key_for(
        &self,
        fetch: &Fetcher,
        endpoints: &ProviderEndpoints,
        kid: Option<&str>,
    ) -> Result<jsonwebtoken::jwk::Jwk, String> {
        let find = |set: &jsonwebtoken::jwk::JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        {
            let cached = lock(&self.jwks);
            if let Some((set, at)) = cached.as_ref() {
                if let Some(key) = find(set) {
                    return Ok(key);
                }
                if at.elapsed() < Duration::from_secs(1) {
                    return Err(
                        "the ID token is signed with a key the provider does not publish".into(),
                    );
                }
            }
        }
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_slice(&fetch.provider_get(&endpoints.jwks)?)
                .map_err(|e| format!("the provider's JWKS is not valid: {e}"))?;
        let key = find(&set);
        *lock(&self.jwks) = Some((set, Instant::now()));
        key.ok_or_else(|| "the ID token is signed with a key the provider does not publish".into())
    }

    /// The ID token's claims, verified. Only asymmetric algorithms: an HS256 ID token (keyed
    /// with the client secret) is refused, and the JWK's own alg/kty must agree with the header.
    fn verify_id_token(
        &self,
        fetch: &Fetcher,
        endpoints: &ProviderEndpoints,
        id_token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, String> {
        use jsonwebtoken::Algorithm as A;
        let header =
            jsonwebtoken::decode_header(id_token).map_err(|_| "the ID token is malformed")?;
        if !matches!(
            header.alg,
            A::RS256
                | A::RS384
                | A::RS512
                | A::PS256
                | A::PS384
                | A::PS512
                | A::ES256
                | A::ES384
                | A::EdDSA
        ) {
            return Err(format!(
                "the ID token uses algorithm {:?}, which is not accepted",
                header.alg
            ));
        }
        let jwk = self.key_for(fetch, endpoints, header.kid.as_deref())?;
        if let Some(alg) = jwk.common.key_algorithm {
            if jsonwebtoken::jwk::KeyAlgorithm::from(header.alg) != alg {
                return Err("the ID token's algorithm does not match its key".into());
            }
        }
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)
            .map_err(|e| format!("the provider's key is not usable: {e}"))?;
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.leeway = 60;
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.set_issuer(&[
            self.config.issuer.as_str(),
            &format!("{}/", self.config.issuer),
        ]);
        validation.set_audience(&[self.config.client_id.as_str()]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(id_token, &key, &validation)
            .map_err(|e| format!("the ID token was refused: {e}"))?
            .claims;
        if let Some(Value::Array(audiences)) = claims.get("aud") {
            if audiences.len() > 1 && claim(&claims, "azp") != self.config.client_id {
                return Err("the ID token was issued to another party (azp)".into());
            }
        }
        if !constant_time_eq(
            &sha256(claim(&claims, "nonce").as_bytes()),
            &sha256(nonce.as_bytes()),
        ) {
            return Err("the ID token's nonce does not match this sign-in".into());
        }
        Ok(claims)
    }
}

impl OAuth {
    /// The sign-in page's Allow in oidc mode: off to the provider, carrying (signed) the client's
    /// request, our PKCE verifier and nonce.
    fn send_to_provider(&self, request: &Request, grant: &GrantRequest) -> Response {
        let Some(oidc) = &self.oidc else {
            return self.internal_error_page("oidc mode without a provider");
        };
        let endpoints = match oidc.endpoints(&self.fetch) {
            Ok(endpoints) => endpoints,
            Err(e) => {
                self.count("mcp_oauth_sign_ins_total", "provider_error");
                log_event("warn", "oidc: provider unavailable", &[("error", &e)]);
                return error_page(
                    502,
                    "The company sign-in is not reachable",
                    "This server could not reach the identity provider. Try again in a minute; if it keeps failing, tell your administrator.",
                );
            }
        };
        let (Ok(verifier), Ok(nonce)) = (random_bytes::<32>(), random_bytes::<16>()) else {
            return self.internal_error_page("no randomness for the provider request");
        };
        let (verifier, nonce) = (b64url(&verifier), b64url(&nonce));
        let csrf = cookie(request, self.csrf_cookie_name())
            .unwrap_or("")
            .to_string();
        let mut claims = self.grant_claims(grant, &csrf);
        claims.insert("pkce".into(), json!(verifier));
        claims.insert("nonce".into(), json!(nonce));
        let state = match self.keys().sign(Purpose::Provider, claims) {
            Ok(state) => state,
            Err(e) => return self.internal_error_page(&e),
        };
        let challenge = b64url(&sha256(verifier.as_bytes()));
        let callback = format!("{}/oauth/callback", self.issuer);
        let location = with_query(
            &endpoints.authorization,
            &[
                ("response_type", "code"),
                ("client_id", &oidc.config.client_id),
                ("redirect_uri", &callback),
                ("scope", "openid email profile"),
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        Response::redirect(303, &location).with_header("Referrer-Policy", "no-referrer")
    }

    /// GET /oauth/callback: the provider sends the browser back here.
    fn provider_callback(&self, request: &Request) -> Response {
        let Some(oidc) = &self.oidc else {
            return error_page(
                404,
                "Not found",
                "This server does not sign in with an identity provider.",
            );
        };
        let params = parse_form(&request.query).unwrap_or_default();
        let claims = match self.keys().verify(
            Purpose::Provider,
            params.get("state").map(String::as_str).unwrap_or(""),
            &self.issuer,
            &self.issuer,
        ) {
            Ok(claims) => claims,
            Err(_) => {
                self.count("mcp_oauth_sign_ins_total", "expired_page");
                return error_page(
                    400,
                    "This sign-in is no longer valid",
                    "The answer from the identity provider does not belong to a sign-in started here, or it took more than 10 minutes. \
                     Go back to Claude (or the app you came from) and connect again.",
                );
            }
        };
        let address = self.client_address(request);
        if !self.csrf_matches(request, &claims) {
            self.count("mcp_oauth_sign_ins_total", "csrf");
            self.sign_in_failed(address);
            return error_page(
                403,
                "This sign-in could not be verified",
                "Your browser did not send this sign-in's security check (a cookie), so nothing was signed in. \
                 Make sure cookies are allowed for this site, then connect again from the app.",
            );
        }
        let grant = match self.grant_from_claims(&claims) {
            Ok(grant) => grant,
            Err(AuthorizeError::Page(page)) | Err(AuthorizeError::Redirect(page)) => return page,
        };
        if self.throttle.blocked(address) {
            return self.throttled_page();
        }
        if let Some(error) = params.get("error") {
            self.count("mcp_oauth_sign_ins_total", "denied");
            let error = if error == "access_denied" {
                "access_denied"
            } else {
                "server_error"
            };
            return self.redirect_error(
                &grant,
                error,
                "the identity provider did not sign the analyst in",
            );
        }
        if params
            .get("iss")
            .is_some_and(|iss| iss.trim_end_matches('/') != oidc.config.issuer)
        {
            self.count("mcp_oauth_sign_ins_total", "provider_error");
            return error_page(
                400,
                "The answer came from the wrong identity provider",
                "This sign-in was answered by a provider other than the one this server trusts. Connect again from the app.",
            );
        }
        match self.redeem_at_provider(oidc, &params, &claims) {
            Ok((name, email)) => {
                self.count("mcp_oauth_sign_ins_total", "ok");
                log_event(
                    "info",
                    "oauth sign-in",
                    &[
                        ("caller", &name),
                        ("client", &grant.client.name),
                        ("via", "oidc"),
                    ],
                );
                self.issue_code(&grant, &name, &format!("e:{email}"))
            }
            Err((outcome, title, message)) => {
                self.count("mcp_oauth_sign_ins_total", outcome);
                self.sign_in_failed(address);
                log_event(
                    "warn",
                    "oidc sign-in refused",
                    &[("reason", outcome), ("detail", &message)],
                );
                error_page(403, title, &message)
            }
        }
    }

    /// Redeems the provider's code, verifies the ID token and applies the allow-list. The
    /// analyst name and e-mail, or (metrics outcome, page title, what to do).
    fn redeem_at_provider(
        &self,
        oidc: &Oidc,
        params: &BTreeMap<String, String>,
        state: &Map<String, Value>,
    ) -> Result<(String, String), (&'static str, &'static str, String)> {
        let provider_failed = |detail: String| {
            log_event(
                "warn",
                "oidc: provider exchange failed",
                &[("error", &detail)],
            );
            (
                "provider_error",
                "The company sign-in did not complete",
                "The identity provider's answer could not be verified. Connect again from the app; if it keeps failing, tell your administrator.".to_string(),
            )
        };
        let code = params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| provider_failed("no code in the callback".into()))?;
        let endpoints = oidc.endpoints(&self.fetch).map_err(provider_failed)?;
        let callback = format!("{}/oauth/callback", self.issuer);
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.clone()),
            ("redirect_uri", callback),
            ("code_verifier", claim(state, "pkce").to_string()),
        ];
        let basic = if endpoints.basic_auth {
            Some(format!(
                "Basic {}",
                base64_standard(&format!(
                    "{}:{}",
                    percent_encode(&oidc.config.client_id),
                    percent_encode(&oidc.config.client_secret)
                ))
            ))
        } else {
            form.push(("client_id", oidc.config.client_id.clone()));
            form.push(("client_secret", oidc.config.client_secret.clone()));
            None
        };
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let answer = self
            .fetch
            .provider_post(&endpoints.token, &body.join("&"), basic.as_deref())
            .map_err(provider_failed)?;
        let answer: Value = serde_json::from_slice(&answer)
            .map_err(|e| provider_failed(format!("token response is not JSON: {e}")))?;
        let id_token = answer
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| provider_failed("the token response has no id_token".into()))?;
        let claims = oidc
            .verify_id_token(&self.fetch, &endpoints, id_token, claim(state, "nonce"))
            .map_err(provider_failed)?;
        let email = claim(&claims, "email").to_ascii_lowercase();
        if email.is_empty() || !email.contains('@') {
            return Err((
                "not_allowed",
                "Your account has no e-mail address",
                "The identity provider did not share an e-mail address for your account, so this server cannot tell who you are. Ask your administrator.".into(),
            ));
        }
        let verified = match claims.get("email_verified") {
            Some(Value::Bool(v)) => *v,
            Some(Value::String(v)) => v == "true",
            _ => false,
        };
        if !verified {
            return Err((
                "unverified_email",
                "Your e-mail address is not verified",
                format!("The identity provider has not verified {email}. Verify it there (or ask your administrator), then connect again."),
            ));
        }
        let Some(by_address) = oidc.allowed_by(&email) else {
            return Err((
                "not_allowed",
                "This account may not use this server",
                format!("{email} is not on this server's list of analysts. If you should have access, ask your administrator to add you; or sign in with your work account."),
            ));
        };
        // Google: a domain grant needs the Workspace's hosted-domain claim, not just an address
        // in the domain (consumer accounts can carry any verified address). Any provider that
        // sends `hd` must send the allowed domain.
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let hd = claims.get("hd").and_then(Value::as_str);
        let hd_required = oidc.config.issuer == GOOGLE_ISSUER;
        if !by_address
            && (hd.is_some_and(|hd| !hd.eq_ignore_ascii_case(domain))
                || (hd_required && hd.is_none()))
        {
            return Err((
                "not_allowed",
                "This account may not use this server",
                format!("{email} is not a member of the company's workspace ({domain}). Sign in with your work account."),
            ));
        }
        Ok((oidc.analyst_name(&email), email))
    }
}

fn base64_standard(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

// ── Outbound HTTPS ───────────────────────────────────────────────────────────────────────────
// Blocking ureq on rustls (ring), https only, no redirects, no proxy, 5 s for the whole
// exchange, bounded bodies. Client metadata documents come from addresses the client chose,
// so their fetches resolve the name first and connect only to public addresses (no loopback,
// private, link-local, CGNAT, multicast or reserved ranges — the resolver returns only those
// it allows, so no rebinding between check and connect) unless MCP_OAUTH_ALLOW_PRIVATE_FETCH=1.

struct Fetcher {
    provider: ureq::Agent,
    documents: ureq::Agent,
}

#[derive(Debug)]
struct PublicAddressesOnly {
    allow_private: bool,
}

impl ureq::unversioned::resolver::Resolver for PublicAddressesOnly {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let all = ureq::unversioned::resolver::DefaultResolver::default()
            .resolve(uri, config, timeout)?;
        let mut allowed = self.empty();
        for address in all.iter() {
            if self.allow_private || is_public_address(address.ip()) {
                allowed.push(*address);
            }
        }
        if allowed.is_empty() {
            return Err(ureq::Error::Io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the client metadata document's host resolves only to private, loopback or reserved addresses",
            )));
        }
        Ok(allowed)
    }
}

/// Globally routable unicast: what a client-chosen URL may reach.
fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_address(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064
                || first == 0x0100)
        }
    }
}

/// What outbound HTTPS trusts: the system trust store, found as the PostgreSQL TLS finds it for
/// sslrootcert=system, plus MCP_OAUTH_CA_FILE's CAs (an identity provider's private CA); the
/// file alone when the system store is empty (a scratch image).
fn outbound_roots(ca_file: Option<&str>) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let mut certs = match (system_root_certificates(), ca_file) {
        (Ok(certs), _) => certs,
        (Err(_), Some(_)) => Vec::new(),
        (Err(e), None) => {
            return Err(format!(
                "{e}: outbound HTTPS (identity provider, client metadata documents) would trust \
                 no one; install the CA certificates or set MCP_OAUTH_CA_FILE"
            ))
        }
    };
    if let Some(path) = ca_file {
        let extra = read_pem_certificates(std::path::Path::new(path))
            .map_err(|e| format!("MCP_OAUTH_CA_FILE: {e}"))?;
        certs.extend(extra);
    }
    Ok(certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect())
}

impl Fetcher {
    fn new(config: &OAuthConfig) -> Result<Fetcher, String> {
        let roots =
            ureq::tls::RootCerts::new_with_certs(&outbound_roots(config.ca_file.as_deref())?);
        let agent_config = || {
            ureq::Agent::config_builder()
                .https_only(true)
                .max_redirects(0)
                .proxy(None)
                .http_status_as_error(false)
                .timeout_global(Some(FETCH_TIMEOUT))
                .user_agent(format!("{SERVER_NAME}/{VERSION}"))
                .tls_config(
                    ureq::tls::TlsConfig::builder()
                        .provider(ureq::tls::TlsProvider::Rustls)
                        .unversioned_rustls_crypto_provider(crypto_provider())
                        .root_certs(roots.clone())
                        .build(),
                )
                .build()
        };
        Ok(Fetcher {
            provider: ureq::Agent::new_with_config(agent_config()),
            documents: ureq::Agent::with_parts(
                agent_config(),
                ureq::unversioned::transport::DefaultConnector::new(),
                PublicAddressesOnly {
                    allow_private: config.allow_private_fetch,
                },
            ),
        })
    }

    fn read(
        mut response: ureq::http::Response<ureq::Body>,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, String> {
        let status = response.status().as_u16();
        if status != 200 {
            return Err(format!("{what} answered HTTP {status}"));
        }
        response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| format!("{what}: {e}"))
    }

    fn client_document(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self
            .documents
            .get(url)
            .header("Accept", "application/json")
            .call()
            .map_err(|e| format!("cannot fetch {url}: {e}"))?;
        Fetcher::read(
            response,
            CLIENT_DOCUMENT_MAX_BYTES,
            "the client metadata document",
        )
    }

    fn provider_get(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self
            .provider
            .get(url)
            .header("Accept", "application/json")
            .call()
            .map_err(|e| format!("cannot reach the identity provider at {url}: {e}"))?;
        Fetcher::read(
            response,
            PROVIDER_DOCUMENT_MAX_BYTES,
            "the identity provider",
        )
    }

    fn provider_post(
        &self,
        url: &str,
        form: &str,
        authorization: Option<&str>,
    ) -> Result<Vec<u8>, String> {
        let mut request = self
            .provider
            .post(url)
            .header("Accept", "application/json")
            .header("Content-Type", "application/x-www-form-urlencoded");
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let response = request
            .send(form)
            .map_err(|e| format!("cannot reach the identity provider at {url}: {e}"))?;
        Fetcher::read(
            response,
            PROVIDER_DOCUMENT_MAX_BYTES,
            "the identity provider's token endpoint",
        )
    }
}

impl OAuth {
    /// /metrics families of the OAuth section (closed label sets).
    fn render_metrics(&self) -> String {
        #[rustfmt::skip]
        let families: [(&str, &str, &str); 6] = [
            ("mcp_oauth_sign_ins_total", "outcome", "Sign-in attempts on the OAuth pages by outcome (ok, bad_token, not_allowed, unverified_email, csrf, throttled, …)."),
            ("mcp_oauth_tokens_issued_total", "grant", "OAuth access tokens issued by grant type."),
            ("mcp_oauth_token_errors_total", "error", "Token endpoint refusals by OAuth error code."),
            ("mcp_oauth_registrations_total", "outcome", "Dynamic client registrations by outcome."),
            ("mcp_oauth_client_documents_total", "outcome", "Client ID Metadata Document fetches by outcome."),
            ("mcp_oauth_tables_full_total", "table", "Times an in-process OAuth table was full and made room as documented (codes, sign_ins, addresses, client_documents)."),
        ];
        let counters = lock(&self.counters);
        let mut out = String::new();
        for (family, label, help) in families {
            let samples: Vec<(String, f64)> = counters
                .iter()
                .filter(|((f, _), _)| *f == family)
                .map(|((_, value), n)| (format!("{label}=\"{value}\""), *n as f64))
                .collect();
            write_family(&mut out, family, "counter", help, &samples);
        }
        drop(counters);
        let (codes, sign_ins) = self.ledger.sizes();
        let tables = [
            ("codes", codes),
            ("sign_ins", sign_ins),
            ("addresses", self.throttle.len()),
            ("client_documents", self.documents.len()),
        ];
        let samples: Vec<(String, f64)> = tables
            .iter()
            .map(|(table, n)| (format!("table=\"{table}\""), *n as f64))
            .collect();
        write_family(
            &mut out,
            "mcp_oauth_table_entries",
            "gauge",
            "Entries held by each in-process OAuth table (each capped by its MCP_OAUTH_MAX_* variable).",
            &samples,
        );
        out
    }
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// JSON-RPC / MCP
// Contract: stateless, one JSON response per POST (never SSE). The era comes from the
// MCP-Protocol-Version header: 2026-07-28 is served natively (per-request `_meta`, Mcp-Method /
// Mcp-Name headers, server/discover, resultType, caching hints); an absent header (2025-03-26 is
// assumed) or a 2025 revision gets the initialize-era protocol; anything else is a 400 naming the
// versions we speak. Batches exist only in 2025-03-26, and are bounded: a body is measured before
// it is parsed (at most MAX_JSON_VALUES values, at most MCP_MAX_BATCH messages, else refused whole
// with nothing run); a batch's answers together stop at BATCH_ANSWERS_FACTOR × the result budget
// and its calls share one deadline, the remaining requests being answered "not run". Error texts
// echo at most a short excerpt of what the client sent.
// ════════════════════════════════════════════════════════════════════════════════════════════

const MODERN_VERSION: &str = "2026-07-28";
const LEGACY_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
const SUPPORTED_VERSIONS: [&str; 4] = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"];
/// How long a modern client may cache tools/list and server/discover: the tool set only changes
/// with a new binary.
const CACHE_TTL_MS: u64 = 3_600_000;

const INSTRUCTIONS: &str = "Read-only access to an analytics PostgreSQL database. \
Typical flow: search_objects(query) finds tables, views, columns and functions by name or comment \
(\"which table has fuel costs?\" -> search_objects {query: \"fuel cost\"}); or browse with \
list_schemas -> list_tables(schema). describe_table(schema, table) gives the columns and keys; \
find_join_path(from, to) gives the ready-to-paste JOIN ... ON ... between two tables over their \
foreign keys; profile_columns(schema, table) shows what the columns hold (nulls, distinct and most \
common values, min/max, quantiles) from statistics without scanning; then query(sql). \
explain(sql) shows the plan of a slow or heavy query (analyze: true measures it). \
`query` runs one SELECT / WITH / VALUES / TABLE statement in PostgreSQL syntax inside a read-only \
transaction that is always rolled back; nothing can be changed. Results are capped (max_rows, \
default 1000; truncated=true says a cap was hit, so aggregate or filter instead of paging through \
raw rows). For many rows pass format=csv (or arrays): the same exact values in about half the \
tokens, so about twice the rows fit. Listings too big for one answer are paged: pass next_cursor \
back as cursor. Timestamps are returned in UTC, numbers exactly as PostgreSQL stores them. \
Use sample_table to look at a few rows and list_functions for the reporting functions. \
Columns describe_table marks readable=false are withheld from you (personal data): name the \
readable columns instead of SELECT *. list_databases names the databases this server reads; \
every other tool takes an optional database (default: the first). \
Errors name the PostgreSQL SQLSTATE, e.g. 42501 means the role may not read that object.";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Era {
    /// initialize-era revisions (2025-03-26 … 2025-11-25); the version the header named.
    Legacy(&'static str),
    /// 2026-07-28: stateless, every request carries its version in `_meta`.
    Modern,
}

#[derive(Debug)]
struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
    /// The HTTP status this error travels with (2026-07-28 gives several their own).
    status: u16,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
            status: 200,
        }
    }
    fn invalid_request(message: impl Into<String>) -> RpcError {
        RpcError {
            status: 400,
            ..RpcError::new(-32600, message)
        }
    }
    fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::new(-32602, message)
    }
    fn header_mismatch(message: impl Into<String>) -> RpcError {
        RpcError {
            status: 400,
            ..RpcError::new(-32020, message)
        }
    }
    fn unsupported_version(requested: &str) -> RpcError {
        let requested = excerpt(requested, MAX_ECHO_CHARS);
        RpcError {
            code: -32022,
            message: format!(
                "Unsupported protocol version {requested:?}; supported: {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
            data: Some(json!({ "supported": SUPPORTED_VERSIONS, "requested": requested })),
            status: 400,
        }
    }

    /// A batched request that was answered without being run (a batch limit was reached).
    fn not_run(message: String) -> RpcError {
        RpcError::new(-32000, message)
    }

    fn to_json(&self, id: &Value) -> String {
        let message = excerpt(&self.message, MAX_ERROR_TEXT_CHARS);
        let mut error = json!({ "code": self.code, "message": message });
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        json!({ "jsonrpc": "2.0", "id": id, "error": error }).to_string()
    }
}

/// What one JSON-RPC message produced.
enum Outcome {
    /// A response body (a JSON object) and its HTTP status.
    Reply(u16, String),
    /// A notification or a client response: 202 with no body.
    Accepted,
}

/// What a request handler needs besides the message: who is asking, the HTTP headers that
/// 2026-07-28 cross-checks against the body, and (inside a batch) the batch's shared deadline.
#[derive(Clone, Copy)]
struct CallContext<'a> {
    app: &'static App,
    request: &'a Request,
    caller: &'a Caller,
    era: Era,
    deadline: Option<Instant>,
}

/// Most JSON values (objects, arrays, keys, strings, numbers, literals) one request body may
/// hold. A batch of MCP_MAX_BATCH ordinary messages needs a few hundred; without the cap a 1 MiB
/// body of `[0,0,…]` or `{"":0}` parses into 100–200 MB of values.
const MAX_JSON_VALUES: usize = 4096;
/// The answers of one batch together stop at this many times MCP_MAX_RESULT_BYTES.
const BATCH_ANSWERS_FACTOR: u64 = 4;
/// How much of a client-sent name an error message quotes, and how long any error text may be.
const MAX_ECHO_CHARS: usize = 64;
const MAX_ERROR_TEXT_CHARS: usize = 2000;

fn handle_jsonrpc(app: &'static App, request: &mut Request, caller: &Caller) -> Response {
    // The body is not needed once parsed: free it before any work runs.
    let body = std::mem::take(&mut request.body);
    let parsed = parse_body(&body, app.config.max_batch, &app.metrics);
    drop(body);
    let message = match parsed {
        Ok(message) => message,
        Err(error) => return Response::json(error.status, error.to_json(&Value::Null)),
    };
    let request: &Request = request;
    let era = match request.header("mcp-protocol-version") {
        None => Era::Legacy("2025-03-26"),
        Some(MODERN_VERSION) => Era::Modern,
        Some(v) => match LEGACY_VERSIONS.iter().find(|known| **known == v) {
            Some(known) => Era::Legacy(known),
            None => {
                let id = message.get("id").cloned().unwrap_or(Value::Null);
                return Response::json(400, RpcError::unsupported_version(v).to_json(&id));
            }
        },
    };
    let context = CallContext {
        app,
        request,
        caller,
        era,
        deadline: None,
    };
    match message {
        Value::Array(batch) => handle_batch(&context, &batch),
        single => match handle_message(&context, &single) {
            Outcome::Reply(200, body) if negotiates_views_at_initialize(era, &single) => {
                match view_session_id() {
                    Ok(session) => Response::json(200, body).with_header("Mcp-Session-Id", session),
                    Err(e) => {
                        log_event("error", "initialize: no session id", &[("error", &e)]);
                        let id = single.get("id").cloned().unwrap_or(Value::Null);
                        let error = RpcError::new(-32603, format!("{e}; try again"));
                        Response::json(500, error.to_json(&id))
                    }
                }
            }
            Outcome::Reply(status, body) => Response::json(status, body),
            Outcome::Accepted => Response::empty(202),
        },
    }
}

/// Parses a request body, after measuring it without allocating: a batch of more than
/// MCP_MAX_BATCH messages, or a body of more than MAX_JSON_VALUES values, is refused before a
/// single value is built (so before anything runs or is audited), and counted in /metrics.
fn parse_body(body: &[u8], max_batch: usize, metrics: &Metrics) -> Result<Value, RpcError> {
    let refused = |limit, message| {
        metrics.count_limit(limit);
        RpcError::invalid_request(message)
    };
    let shape = measure_json(body);
    if let Some(messages) = shape.batch_messages.filter(|n| *n > max_batch) {
        return Err(refused(
            "max_batch",
            format!(
                "batch of {messages} messages refused: at most {max_batch} per batch (MCP_MAX_BATCH); \
                 nothing was run. Send fewer per batch, or one request per POST"
            ),
        ));
    }
    if shape.values > MAX_JSON_VALUES {
        return Err(refused(
            "json_values",
            format!(
                "request refused: it holds more than {MAX_JSON_VALUES} JSON values (an MCP request needs \
                 a few dozen); nothing was run"
            ),
        ));
    }
    serde_json::from_slice(body).map_err(|e| RpcError {
        status: 400,
        ..RpcError::new(-32700, format!("parse error: {e}"))
    })
}

/// What `measure_json` found: how many values the body would parse into and, when it is an array
/// (a batch), how many messages it holds. Exact for valid JSON; for invalid JSON only an upper
/// bound of what serde_json builds before it reports the syntax error.
#[derive(Debug, PartialEq)]
struct JsonShape {
    values: usize,
    batch_messages: Option<usize>,
}

/// Counts value starts in one pass over the bytes, skipping string contents: `{`, `[`, every
/// string (keys too), and every scalar (its first byte after `[`, `,`, `:` or the start).
fn measure_json(body: &[u8]) -> JsonShape {
    let (mut values, mut depth, mut top_items) = (0usize, 0usize, 0usize);
    let mut batch = false;
    let mut previous = b',';
    let mut bytes = body.iter();
    while let Some(&byte) = bytes.next() {
        let starts_value = match byte {
            b' ' | b'\t' | b'\n' | b'\r' => continue,
            b'"' => {
                let mut escaped = false;
                for &inner in bytes.by_ref() {
                    match inner {
                        _ if escaped => escaped = false,
                        b'\\' => escaped = true,
                        b'"' => break,
                        _ => {}
                    }
                }
                true
            }
            b'{' | b'[' => true,
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => matches!(previous, b'[' | b',' | b':'),
            _ => false,
        };
        if starts_value {
            values += 1;
            if depth == 1 && batch && top_items == 0 {
                top_items = 1;
            }
        }
        match byte {
            b'[' if depth == 0 && values == 1 => batch = true,
            b',' if depth == 1 && batch => top_items += 1,
            _ => {}
        }
        match byte {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = byte;
    }
    JsonShape {
        values,
        batch_messages: batch.then_some(top_items),
    }
}

fn handle_batch(context: &CallContext, batch: &[Value]) -> Response {
    if context.era != Era::Legacy("2025-03-26") {
        let error = RpcError::invalid_request(
            "JSON-RPC batches are only supported in protocol version 2025-03-26",
        );
        return Response::json(400, error.to_json(&Value::Null));
    }
    if batch.is_empty() {
        return Response::json(
            400,
            RpcError::invalid_request("empty batch").to_json(&Value::Null),
        );
    }
    let config = &context.app.config;
    // A batch may take what one call may: a wait for a connection, then a statement's timeout.
    let allowed = config.pool_wait + Duration::from_millis(config.statement_timeout_ms);
    let context = CallContext {
        deadline: Some(Instant::now() + allowed),
        ..*context
    };
    let answers_limit = (BATCH_ANSWERS_FACTOR * config.max_result_bytes) as usize;
    let mut body = String::from("[");
    let mut replies = 0;
    for message in batch {
        let outcome = match classify(message) {
            Err(answered) => answered,
            Ok(call) if body.len() >= answers_limit => {
                context.app.metrics.count_limit("batch_answers");
                let error = RpcError::not_run(format!(
                    "not run: this batch's answers reached {} bytes, the most one batch may return \
                     ({BATCH_ANSWERS_FACTOR} × MCP_MAX_RESULT_BYTES = {answers_limit}); send the remaining \
                     requests in another batch or one by one",
                    body.len()
                ));
                reply_error(&call.id, error)
            }
            Ok(call) if context.deadline.is_some_and(|d| Instant::now() >= d) => {
                context.app.metrics.count_limit("batch_time");
                let error = RpcError::not_run(format!(
                    "not run: this batch's time ran out (a batch may take MCP_POOL_WAIT_MS + \
                     MCP_STATEMENT_TIMEOUT_MS = {} in all); send the remaining requests in another \
                     batch or one by one",
                    human_duration(allowed.as_millis() as u64)
                ));
                reply_error(&call.id, error)
            }
            Ok(call) => run_call(&context, &call),
        };
        if let Outcome::Reply(_, reply) = outcome {
            if replies > 0 {
                body.push(',');
            }
            body.push_str(&reply);
            replies += 1;
        }
    }
    if replies == 0 {
        return Response::empty(202);
    }
    body.push(']');
    Response::json(200, body)
}

/// A JSON-RPC request ready to run.
struct Call<'m> {
    id: Value,
    method: &'m str,
    params: &'m Value,
}

/// Classifies one message (request, notification, client response, or garbage) and answers it.
fn handle_message(context: &CallContext, message: &Value) -> Outcome {
    match classify(message) {
        Ok(call) => run_call(context, &call),
        Err(answered) => answered,
    }
}

/// A request to run, or the outcome of a message that needs no running: an invalid one (its
/// error), a notification or a client's response (nothing to answer).
fn classify(message: &Value) -> Result<Call<'_>, Outcome> {
    static NO_PARAMS: Value = Value::Null;
    let Some(object) = message.as_object() else {
        return Err(reply_error(
            &Value::Null,
            RpcError::invalid_request("a JSON-RPC message must be an object"),
        ));
    };
    let id = object
        .get("id")
        .filter(|id| id.is_string() || id.is_i64() || id.is_u64())
        .cloned()
        .unwrap_or(Value::Null);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(reply_error(
            &id,
            RpcError::invalid_request("\"jsonrpc\" must be \"2.0\""),
        ));
    }
    let Some(method) = object.get("method") else {
        if object.contains_key("result") || object.contains_key("error") {
            return Err(Outcome::Accepted); // a client's response to a request we never send
        }
        return Err(reply_error(
            &id,
            RpcError::invalid_request("missing \"method\""),
        ));
    };
    let Some(method) = method.as_str() else {
        return Err(reply_error(
            &id,
            RpcError::invalid_request("\"method\" must be a string"),
        ));
    };
    if !object.contains_key("id") {
        return Err(Outcome::Accepted); // notifications (initialized, cancelled, …) need no answer
    }
    if id.is_null() {
        return Err(reply_error(
            &id,
            RpcError::invalid_request("\"id\" must be a string or an integer"),
        ));
    }
    let params = object.get("params").unwrap_or(&NO_PARAMS);
    if !(params.is_object() || params.is_null()) {
        return Err(reply_error(
            &id,
            RpcError::invalid_params("\"params\" must be an object"),
        ));
    }
    Ok(Call { id, method, params })
}

/// Runs a request. A panic inside its handler is caught here and becomes -32603: one bad request
/// never takes the connection, let alone the process, down.
fn run_call(context: &CallContext, call: &Call) -> Outcome {
    let result = run_caught(call.method, || dispatch(context, call.method, call.params));
    context.app.metrics.count_rpc(call.method);
    match result {
        Ok(mut result) => {
            // In place: a big answer is moved along its own buffer, not copied into a second one.
            result.insert_str(
                0,
                &format!(r#"{{"jsonrpc":"2.0","id":{},"result":"#, call.id),
            );
            result.push('}');
            Outcome::Reply(200, result)
        }
        Err(error) => reply_error(&call.id, error),
    }
}

/// At most `max` characters of `text` (… marks a cut): an error must not echo a megabyte of what
/// the client sent back to it, let alone a megabyte per batched message.
fn excerpt(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text.into(),
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
    }
}

/// Runs a request handler; a panic inside it is logged and becomes -32603 instead of taking the
/// connection (or, with `panic = "abort"`, the process) down.
fn run_caught(
    method: &str,
    handler: impl FnOnce() -> Result<String, RpcError>,
) -> Result<String, RpcError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(handler)).unwrap_or_else(|panic| {
        let what = panic_message(&panic);
        log_event(
            "error",
            "request handler panicked",
            &[("method", method), ("panic", &what)],
        );
        Err(RpcError::new(
            -32603,
            "internal error: the request failed unexpectedly and was logged",
        ))
    })
}

fn reply_error(id: &Value, error: RpcError) -> Outcome {
    Outcome::Reply(error.status, error.to_json(id))
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Routes a request to its method; the result is a JSON object as text.
fn dispatch(context: &CallContext, method: &str, params: &Value) -> Result<String, RpcError> {
    let views = client_renders_views(context, method, params);
    match context.era {
        Era::Legacy(_) => match method {
            "initialize" => Ok(initialize_result(
                params,
                views,
                context.app.config.server_label.as_deref(),
            )),
            "ping" => Ok("{}".to_string()),
            "tools/list" => Ok(TOOLS_LIST.get(views).for_era(context.era)),
            "tools/call" => call_tool(context, params),
            "resources/list" if views => Ok(RESOURCES_LIST.for_era(context.era)),
            "resources/templates/list" if views => Ok(RESOURCE_TEMPLATES_LIST.for_era(context.era)),
            "resources/read" if views => read_resource(context.era, params),
            _ => Err(RpcError::new(
                -32601,
                format!("method not found: {}", excerpt(method, MAX_ECHO_CHARS)),
            )),
        },
        Era::Modern => {
            check_modern_request(context.request, method, params)?;
            let result = match method {
                "server/discover" => discover_result(views),
                "tools/list" => TOOLS_LIST.get(views).for_era(context.era),
                "tools/call" => call_tool(context, params)?,
                "resources/list" if views => RESOURCES_LIST.for_era(context.era),
                "resources/templates/list" if views => RESOURCE_TEMPLATES_LIST.for_era(context.era),
                "resources/read" if views => read_resource(context.era, params)?,
                _ => {
                    return Err(RpcError {
                        status: 404,
                        ..RpcError::new(
                            -32601,
                            format!(
                                "method not found in protocol version {MODERN_VERSION}: {}",
                                excerpt(method, MAX_ECHO_CHARS)
                            ),
                        )
                    })
                }
            };
            Ok(with_modern_result_fields(
                result,
                &context.app.modern_result_fields,
            ))
        }
    }
}

/// Who we are, as initialize's serverInfo and 2026-07-28's `_meta` say it; MCP_SERVER_LABEL, when
/// set, is part of the title so an analyst connected to several deployments can tell them apart.
fn server_info(label: Option<&str>) -> Value {
    let title = match label {
        Some(label) => format!("Analytics (read-only PostgreSQL): {label}"),
        None => "Analytics (read-only PostgreSQL)".to_string(),
    };
    json!({ "name": SERVER_NAME, "title": title, "version": VERSION })
}

/// What every 2026-07-28 result carries besides its own fields; built once at start-up.
fn modern_result_fields(label: Option<&str>) -> String {
    let meta = json!({ "io.modelcontextprotocol/serverInfo": server_info(label) });
    format!(r#""resultType":"complete","_meta":{meta}"#)
}

/// What the server offers: tools always; the result view's resources and the MCP Apps extension
/// only to a client that negotiated it (see the MCP Apps part below).
fn server_capabilities(views: bool) -> Value {
    let mut capabilities = json!({ "tools": { "listChanged": false } });
    if views {
        capabilities["resources"] = json!({});
        capabilities["extensions"] = json!({ UI_EXTENSION: {} });
    }
    capabilities
}

/// Echo a requested initialize-era version we speak; otherwise answer the latest of them.
fn initialize_result(params: &Value, views: bool, label: Option<&str>) -> String {
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = LEGACY_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(LEGACY_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": server_capabilities(views),
        "serverInfo": server_info(label),
        "instructions": INSTRUCTIONS,
    })
    .to_string()
}

fn discover_result(views: bool) -> String {
    json!({
        "supportedVersions": SUPPORTED_VERSIONS,
        "capabilities": server_capabilities(views),
        "instructions": INSTRUCTIONS,
        "ttlMs": CACHE_TTL_MS,
        "cacheScope": "public",
    })
    .to_string()
}

/// Adds what every 2026-07-28 result carries: `resultType` and the server's identity in `_meta`
/// (`fields`, from modern_result_fields). Edits the result in place: a big answer is not copied
/// into a second buffer.
fn with_modern_result_fields(mut result: String, fields: &str) -> String {
    let Some(open) = result.find('{') else {
        return format!("{{{fields}}}");
    };
    let separator = if result[open + 1..].trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    result.replace_range(..=open, &format!("{{{fields}{separator}"));
    result
}

/// The 2026-07-28 request checks, in the spec's order: required `_meta` fields (-32602), then the
/// headers that must mirror the body (-32020). The version itself was matched from the header.
fn check_modern_request(request: &Request, method: &str, params: &Value) -> Result<(), RpcError> {
    let missing_meta = |what: &str| RpcError {
        status: 400,
        ..RpcError::invalid_params(format!("params._meta must carry {what}"))
    };
    let meta = params
        .get("_meta")
        .and_then(Value::as_object)
        .ok_or_else(|| missing_meta("the request metadata"))?;
    let version = meta
        .get("io.modelcontextprotocol/protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| missing_meta("io.modelcontextprotocol/protocolVersion"))?;
    if !meta
        .get("io.modelcontextprotocol/clientCapabilities")
        .is_some_and(Value::is_object)
    {
        return Err(missing_meta("io.modelcontextprotocol/clientCapabilities"));
    }
    let cut = |text: &str| excerpt(text, MAX_ECHO_CHARS).into_owned();
    if version != MODERN_VERSION {
        return Err(RpcError::header_mismatch(format!(
            "Header mismatch: MCP-Protocol-Version header value '{MODERN_VERSION}' does not match body value '{}'",
            cut(version)
        )));
    }
    match request.header("mcp-method") {
        None => {
            return Err(RpcError::header_mismatch(
                "Header mismatch: the Mcp-Method header is required",
            ))
        }
        Some(header) if header != method => {
            return Err(RpcError::header_mismatch(format!(
                "Header mismatch: Mcp-Method header value '{}' does not match body value '{}'",
                cut(header),
                cut(method)
            )))
        }
        Some(_) => {}
    }
    if method == "tools/call" {
        let name = params.get("name").and_then(Value::as_str).unwrap_or("");
        let header = request.header("mcp-name").ok_or_else(|| {
            RpcError::header_mismatch(
                "Header mismatch: the Mcp-Name header is required for tools/call",
            )
        })?;
        let decoded = decode_header_value(header.trim()).ok_or_else(|| {
            RpcError::header_mismatch(
                "Header mismatch: the Mcp-Name header is not valid =?base64?…?=",
            )
        })?;
        if decoded != name {
            return Err(RpcError::header_mismatch(format!(
                "Header mismatch: Mcp-Name header value '{}' does not match body value '{}'",
                cut(&decoded),
                cut(name)
            )));
        }
    }
    Ok(())
}

/// Decodes the `=?base64?…?=` form 2026-07-28 uses for header values that are not plain ASCII.
fn decode_header_value(value: &str) -> Option<String> {
    let Some(encoded) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Some(value.to_string());
    };
    String::from_utf8(base64_decode(encoded)?).ok()
}

/// Standard or URL-safe alphabet, padding optional: what clients are seen to send.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient);
    standard
        .decode(text)
        .or_else(|_| url_safe.decode(text))
        .ok()
}

// ── MCP Apps: the result view (extension io.modelcontextprotocol/ui) ─────────────────────────
// `query` and `sample_table` name an HTML view (`_meta.ui.resourceUri`) that hosts such as
// Claude render inline from the tool's answer; the view itself is web/result.html, compiled in.
// It is offered only to a client that negotiated the extension (its capabilities list
// `extensions["io.modelcontextprotocol/ui"].mimeTypes` with text/html;profile=mcp-app), so every
// other client gets exactly the answers it got before. The server keeps no state, so it learns
// this per request: 2026-07-28 carries the client's capabilities in every request's `_meta`;
// the initialize era states them only in `initialize`, so a negotiating client is handed an
// `Mcp-Session-Id` that says so, which the transport makes it echo on every later request.

const UI_EXTENSION: &str = "io.modelcontextprotocol/ui";
const VIEW_MIME_TYPE: &str = "text/html;profile=mcp-app";
const RESULT_VIEW_URI: &str = "ui://analytics-mcp/result";
const RESULT_VIEW_HTML: &str = include_str!("web/result.html");
/// Tools whose answer has the `{columns, rows, truncated…}` shape the view draws.
const TOOLS_WITH_RESULT_VIEW: [&str; 2] = ["query", "sample_table"];
/// Marks a session id as "this client renders views"; nothing else is in it or kept anywhere.
const VIEW_SESSION_PREFIX: &str = "mcp-apps.";

/// Whether a `capabilities` object (initialize's, or 2026-07-28's per-request one) declares the
/// MCP Apps extension with the HTML profile our view is written in.
fn declares_views(capabilities: Option<&Value>) -> bool {
    capabilities
        .and_then(|c| c.get("extensions"))
        .and_then(|e| e.get(UI_EXTENSION))
        .and_then(|ui| ui.get("mimeTypes"))
        .and_then(Value::as_array)
        .is_some_and(|types| types.iter().any(|t| t.as_str() == Some(VIEW_MIME_TYPE)))
}

/// Whether the client making this request negotiated the view (see the contract above).
fn client_renders_views(context: &CallContext, method: &str, params: &Value) -> bool {
    match context.era {
        Era::Modern => declares_views(
            params
                .get("_meta")
                .and_then(|meta| meta.get("io.modelcontextprotocol/clientCapabilities")),
        ),
        Era::Legacy(_) if method == "initialize" => declares_views(params.get("capabilities")),
        Era::Legacy(_) => context
            .request
            .header("mcp-session-id")
            .is_some_and(|id| id.starts_with(VIEW_SESSION_PREFIX)),
    }
}

/// An initialize-era `initialize` request that declares the extension: its answer carries the
/// session id that lets later requests say so.
fn negotiates_views_at_initialize(era: Era, message: &Value) -> bool {
    matches!(era, Era::Legacy(_))
        && message.get("method").and_then(Value::as_str) == Some("initialize")
        && declares_views(message.get("params").and_then(|p| p.get("capabilities")))
}

/// `mcp-apps.` and 128 random bits: unique, as session ids should be, though it grants nothing
/// (every request is still authenticated by its bearer token).
fn view_session_id() -> Result<String, String> {
    Ok(format!("{VIEW_SESSION_PREFIX}{}", random_hex::<16>()?))
}

/// How the view may be hosted: nothing external at all (no connections, scripts, styles, fonts,
/// images or frames from anywhere), a border, and the clipboard for "copy as CSV" / "copy SQL".
fn result_view_meta() -> Value {
    json!({ "ui": {
        "csp": { "connectDomains": [], "resourceDomains": [], "frameDomains": [], "baseUriDomains": [] },
        "permissions": { "clipboardWrite": {} },
        "prefersBorder": true,
    }})
}

/// One answer per era: 2026-07-28 adds caching hints (the view changes only with the binary).
struct EraAnswers {
    legacy: String,
    modern: String,
}

impl EraAnswers {
    fn cacheable(result: Value) -> EraAnswers {
        let mut modern = result.clone();
        modern["ttlMs"] = json!(CACHE_TTL_MS);
        modern["cacheScope"] = json!("public");
        EraAnswers {
            legacy: result.to_string(),
            modern: modern.to_string(),
        }
    }

    fn for_era(&self, era: Era) -> String {
        match era {
            Era::Legacy(_) => self.legacy.clone(),
            Era::Modern => self.modern.clone(),
        }
    }
}

static RESOURCES_LIST: Lazy<EraAnswers> = Lazy::new(|| {
    EraAnswers::cacheable(json!({ "resources": [{
        "uri": RESULT_VIEW_URI,
        "name": "result",
        "title": "Query result view",
        "description": "Table and chart of a query or sample_table answer, rendered by MCP Apps hosts",
        "mimeType": VIEW_MIME_TYPE,
        "_meta": result_view_meta(),
    }]}))
});

static RESOURCE_TEMPLATES_LIST: Lazy<EraAnswers> =
    Lazy::new(|| EraAnswers::cacheable(json!({ "resourceTemplates": [] })));

static RESULT_VIEW_READ: Lazy<EraAnswers> = Lazy::new(|| {
    EraAnswers::cacheable(json!({ "contents": [{
        "uri": RESULT_VIEW_URI,
        "mimeType": VIEW_MIME_TYPE,
        "text": RESULT_VIEW_HTML,
        "_meta": result_view_meta(),
    }]}))
});

/// `resources/read`: the view is the only resource. An unknown URI is "resource not found":
/// -32002 in the initialize era, -32602 from 2026-07-28 on (SEP-2164).
fn read_resource(era: Era, params: &Value) -> Result<String, RpcError> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("resources/read needs params.uri (a string)"))?;
    if uri != RESULT_VIEW_URI {
        let code = if era == Era::Modern { -32602 } else { -32002 };
        let uri = excerpt(uri, MAX_ECHO_CHARS);
        return Err(RpcError {
            data: Some(json!({ "uri": uri })),
            ..RpcError::new(
                code,
                format!("Resource not found: {uri} (the only resource is {RESULT_VIEW_URI})"),
            )
        });
    }
    Ok(RESULT_VIEW_READ.for_era(era))
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// Tools
// Contract: the six tools of the Python seed, same names and arguments, so analysts' prompts keep
// working. Arguments are checked against the same table that produces `inputSchema` (unknown
// tool or bad arguments → -32602). A tool's answer is one JSON object, sent as structuredContent
// and as a text block; anything the database or the guard refuses is an `isError` result whose
// text says what happened and carries the SQLSTATE.
// ════════════════════════════════════════════════════════════════════════════════════════════

struct ToolSpec {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    params: &'static [Param],
    output_schema: fn() -> Value,
    run: fn(&ToolContext, &Arguments) -> Result<ToolOutput, ToolFailure>,
}

/// What a tool runs with: the server, who is asking (database work is done on the caller's
/// behalf, so it goes through here rather than straight to the pool) and, in a batch, by when.
struct ToolContext<'a> {
    app: &'static App,
    caller: &'a Caller,
    deadline: Option<Instant>,
    /// The database the call named (its `database` argument), or the default one.
    database: &'static Database,
}

impl ToolContext<'_> {
    /// Runs `work` in one read-only transaction on a pooled connection (see Pool::read_only),
    /// within the caller's fair share of the pool, and as the caller's own database role when
    /// MCP_ANALYST_ROLES gives them one.
    fn read_only<T>(
        &self,
        mut work: impl FnMut(&mut Session) -> Result<T, DbError>,
    ) -> Result<T, ToolFailure> {
        let claim = Claim {
            // Without tokens everyone is the one "anonymous" caller: no analysts to share between.
            analyst: (self.caller.via != "none").then_some(self.caller.name.as_str()),
            deadline: self.deadline,
        };
        let Some(role) = self.database_role()? else {
            return self.database.pool.read_only(&claim, work);
        };
        let (pool, analyst) = (&self.database.pool, &self.caller.name);
        pool.read_only(&claim, |session| {
            if let Err(why) = session.become_role(&role)? {
                return Ok(Err(ToolFailure::Forbidden(format!(
                    "cannot work as database role {role:?} for analyst {analyst}: {why}. Create it (role.sql -v analysts=…) and make the login role a member of it"
                ))));
            }
            if let Err(problems) = pool.verdict_on_role(session, &role)? {
                return Ok(Err(ToolFailure::Forbidden(format!(
                    "database role {role:?} of analyst {analyst} is not read-only ({problems}); refusing to serve as it"
                ))));
            }
            let value = work(session)?;
            let now = session.current_role()?;
            if now != role {
                return Ok(Err(ToolFailure::Forbidden(format!(
                    "the statement switched the database role from {role:?} to {now:?} (a function calling set_config or SET ROLE?); the answer is withheld"
                ))));
            }
            Ok(Ok(value))
        })?
    }

    /// The role the caller's work runs as; None: the login role itself.
    fn database_role(&self) -> Result<Option<String>, ToolFailure> {
        match &self.config().analyst_roles {
            Some(roles) => roles.resolve(self.caller),
            None => Ok(None),
        }
    }

    /// The configuration of the call's database: the server's, with that database's limits.
    fn config(&self) -> &Config {
        &self.database.config
    }
}

struct Param {
    name: &'static str,
    kind: ParamKind,
    required: bool,
    description: &'static str,
}

#[derive(Clone, Copy)]
enum ParamKind {
    /// A string; `default` is only advertised (the tool applies it, see list_functions).
    Text { default: Option<&'static str> },
    /// An integer ≥ `min`, `default` when absent.
    Integer { default: i64, min: i64 },
    /// true or false, `default` when absent.
    Flag { default: bool },
    /// One of `choices`, `default` when absent.
    #[allow(dead_code)] // for query/sample_table's `format` (issue 12, second part)
    Choice {
        choices: &'static [&'static str],
        default: &'static str,
    },
    /// A list of at most `max` strings, each one of `choices` unless that is empty; absent means
    /// the tool's own default (say, every column).
    Names {
        max: usize,
        choices: &'static [&'static str],
    },
}

const SCHEMA_PARAM: Param = Param {
    name: "schema",
    kind: ParamKind::Text { default: None },
    required: true,
    description: "Schema name, exactly as list_schemas shows it",
};
const FORMAT_PARAM: Param = Param {
    name: "format",
    kind: ParamKind::Choice {
        choices: ResultFormat::NAMES,
        default: "objects",
    },
    required: false,
    description: "How rows come back: objects (one JSON object per row), arrays (column names once, \
        each row a JSON array: fewer tokens), csv or markdown (the text block is CSV or a Markdown table; \
        structuredContent carries the rows as arrays). The byte budget counts the formatted rows, so \
        arrays and csv fit the most rows.",
};
const TABLE_PARAM: Param = Param {
    name: "table",
    kind: ParamKind::Text { default: None },
    required: true,
    description:
        "Table, view or materialized view name, exactly as list_tables shows it (no quoting)",
};

const CURSOR_PARAM: Param = Param {
    name: "cursor",
    kind: ParamKind::Text { default: None },
    required: false,
    description: "next_cursor from the previous answer, to continue a listing that did not fit (leave out to start)",
};

static TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: "query",
        title: "Run a read-only SQL query",
        description: "Run one read-only PostgreSQL SELECT (or WITH / VALUES / TABLE) statement and get the rows back \
            in column order, with each column's type: as JSON objects (default), or with format=arrays, csv or \
            markdown in fewer tokens. Runs in a read-only transaction that is rolled back; writes, DDL, multiple \
            statements and session changes are refused. At most max_rows rows (default 1000, server ceiling \
            applies) and a byte budget are returned: truncated=true with truncated_reason says which cap was hit — \
            aggregate (GROUP BY, count, avg, percentile_cont) or filter rather than pulling raw rows. Numbers are \
            exact (numeric/int8 as JSON numbers), timestamps are UTC ISO 8601 text, bytea is \\x hex, PostGIS \
            geometry and geography are GeoJSON. provenance says when the data was read (transaction time), from \
            which database and how long the database took. Errors carry the SQLSTATE (42501 permission denied, \
            42601 syntax, 57014 timeout).",
        params: &[
            Param { name: "sql", kind: ParamKind::Text { default: None }, required: true, description: "One SELECT/WITH/VALUES/TABLE statement" },
            Param {
                name: "max_rows",
                kind: ParamKind::Integer { default: 1000, min: 1 },
                required: false,
                description: "Most rows to return (values above the server ceiling are lowered to it)",
            },
            FORMAT_PARAM,
        ],
        output_schema: query_output_schema,
        run: tool_query,
    },
    ToolSpec {
        name: "list_schemas",
        title: "List readable schemas",
        description: "List the schemas this server can read, with how many tables, views, materialized views and \
            functions each holds and its comment. Start here (in a big database, search_objects finds tables by name \
            or comment directly).",
        params: &[CURSOR_PARAM],
        output_schema: list_schemas_output_schema,
        run: tool_list_schemas,
    },
    ToolSpec {
        name: "list_tables",
        title: "List tables in a schema",
        description: "List the tables, views, materialized views, partitioned and foreign tables of one readable \
            schema, with each one's kind, estimated row count (from statistics, may be approximate or null) and comment. \
            A schema too big for one answer is paged: truncated=true with next_cursor; in a schema of thousands of \
            tables, search_objects finds the right one faster.",
        params: &[SCHEMA_PARAM, CURSOR_PARAM],
        output_schema: list_tables_output_schema,
        run: tool_list_tables,
    },
    ToolSpec {
        name: "describe_table",
        title: "Describe a table or view",
        description: "Describe one table, view or materialized view: its columns in order with type, nullability, \
            default, comment and whether you may read it (readable=false: withheld personal data; name only readable \
            columns, SELECT * is refused), its primary key and its foreign keys (what each references). Use it before \
            writing a query. A table with more columns than fit one answer is paged (next_cursor).",
        params: &[SCHEMA_PARAM, TABLE_PARAM, CURSOR_PARAM],
        output_schema: describe_table_output_schema,
        run: tool_describe_table,
    },
    ToolSpec {
        name: "list_functions",
        title: "List functions in a schema",
        description: "List the callable functions of a schema (default 'reporting', or the first readable schema \
            when there is none) with their arguments, result type, kind and comment. Call them from query, e.g. \
            SELECT * FROM reporting.fn_name(...).",
        params: &[Param {
            name: "schema",
            kind: ParamKind::Text {
                default: Some("reporting"),
            },
            required: false,
            description: "Schema name (default 'reporting')",
        },
        CURSOR_PARAM],
        output_schema: list_functions_output_schema,
        run: tool_list_functions,
    },
    ToolSpec {
        name: "sample_table",
        title: "Sample rows of a table",
        description: "Return the first n rows (default 20) of a table, view or materialized view, with column \
            types: a quick look at what the data holds. Same result shape and formats as query; columns you may \
            not read are left out and named in withheld_columns.",
        params: &[
            SCHEMA_PARAM,
            TABLE_PARAM,
            Param {
                name: "n",
                kind: ParamKind::Integer { default: 20, min: 1 },
                required: false,
                description: "Number of rows (server ceiling applies)",
            },
            FORMAT_PARAM,
        ],
        output_schema: query_output_schema,
        run: tool_sample_table,
    },
    ToolSpec {
        name: "explain",
        title: "Explain a query's plan",
        description: "Show how PostgreSQL would run one read-only statement (any statement query accepts; pass it without \
            EXPLAIN): PostgreSQL's EXPLAIN (FORMAT JSON, VERBOSE) plan plus a compact summary — total estimated cost \
            and rows, the most expensive plan nodes, sequential scans of big tables with the indexes those tables have, \
            and with analyze: true the actual rows and time per node and the worst row-estimate misses. analyze runs \
            the statement (read-only, rolled back, under the statement timeout) but never returns its rows. Use it when \
            a query is slow or before running a heavy one.",
        params: &[
            Param { name: "sql", kind: ParamKind::Text { default: None }, required: true, description: "One SELECT/WITH/VALUES/TABLE statement, without EXPLAIN" },
            Param { name: "analyze", kind: ParamKind::Flag { default: false }, required: false, description: "Run the statement to measure actual rows and time (EXPLAIN ANALYZE)" },
            Param { name: "buffers", kind: ParamKind::Flag { default: false }, required: false, description: "Add buffer usage (EXPLAIN BUFFERS; per node with analyze)" },
        ],
        output_schema: explain_output_schema,
        run: tool_explain,
    },
    ToolSpec {
        name: "profile_columns",
        title: "Profile the columns of a table",
        description: "What the columns of a table, view or materialized view hold, from PostgreSQL's statistics \
            (pg_stats) at no scan cost: null fraction, estimated number of distinct values, most common values with \
            their frequencies, min and max, quantiles p10-p90 (from the histogram, which leaves the most common values \
            out), average width in bytes and physical order correlation, and when the table was last analysed. A \
            column without statistics (never analysed, a view) says so; sample: true also reads a bounded sample \
            (TABLESAMPLE, at most 10,000 rows) for exact null fraction, distinct count, min/max and top values. \
            Columns the role may not read are listed as readable=false and not profiled. Wide tables are paged \
            (next_cursor).",
        params: &[
            SCHEMA_PARAM,
            TABLE_PARAM,
            Param { name: "columns", kind: ParamKind::Names { max: 1600, choices: &[] }, required: false, description: "Columns to profile, exact names (default: all)" },
            Param { name: "sample", kind: ParamKind::Flag { default: false }, required: false, description: "Also read a bounded sample of the rows for exact figures (costs a scan of up to 10,000 rows)" },
            CURSOR_PARAM,
        ],
        output_schema: profile_columns_output_schema,
        run: tool_profile_columns,
    },
    ToolSpec {
        name: "find_join_path",
        title: "Find how two tables join",
        description: "The shortest foreign-key paths between two tables, following keys in either direction, up to \
            max_hops joins (default 3, at most 6): each path as ready-to-paste SQL (FROM a JOIN b ON ...) with every \
            hop's cardinality (many-to-one, one-to-many, one-to-one). Composite keys give multi-column ON clauses; \
            from = to gives the self-joins of self-referencing keys. Name tables as schema.table, quoting names that \
            need it (\"Sales\".\"Customers\"); a bare name is looked up in every readable schema. Only keys over \
            columns you may read are followed.",
        params: &[
            Param { name: "from", kind: ParamKind::Text { default: None }, required: true, description: "Table to start from: schema.table" },
            Param { name: "to", kind: ParamKind::Text { default: None }, required: true, description: "Table to reach: schema.table" },
            Param { name: "max_hops", kind: ParamKind::Integer { default: DEFAULT_JOIN_HOPS, min: 1 }, required: false, description: "Most joins in a path (at most 6)" },
        ],
        output_schema: find_join_path_output_schema,
        run: tool_find_join_path,
    },
    ToolSpec {
        name: "search_objects",
        title: "Search tables, columns and functions",
        description: "Find schemas, tables, views, materialized views, foreign tables, columns and functions by name \
            and by comment: the quickest way into a big or unfamiliar database (\"which table has fuel costs?\" -> \
            query \"fuel cost\"). Ranked: exact name, name prefix, name containing every word, comment containing \
            every word, then names or comments containing some of the words, most words first (a word also matches its \
            plural). Each hit has its kind, schema, table (for columns), name, \
            qualified_name (ready to paste), type (the data type of a column, the result of a function), comment \
            (cut to 300 characters) and the estimated rows of its table. limit hits per answer (default 20, at \
            most 100); next_cursor continues. Columns you may not read are no hits: withheld_columns names those \
            that matched.",
        params: &[
            Param { name: "query", kind: ParamKind::Text { default: None }, required: true, description: "Words to look for in names and comments, e.g. \"fuel cost\"" },
            Param { name: "kinds", kind: ParamKind::Names { max: 7, choices: SEARCH_KINDS }, required: false, description: "Only these kinds of object (default: all; 'table' includes partitioned tables)" },
            Param { name: "schema", kind: ParamKind::Text { default: None }, required: false, description: "Only this schema (default: every readable schema)" },
            Param { name: "limit", kind: ParamKind::Integer { default: DEFAULT_SEARCH_LIMIT, min: 1 }, required: false, description: "Most hits per answer (at most 100)" },
            CURSOR_PARAM,
        ],
        output_schema: search_objects_output_schema,
        run: tool_search_objects,
    },
    ToolSpec {
        name: "list_databases",
        title: "List the databases",
        description: "List the databases this server reads, each with its name, label, whether it is the default, \
            its row ceiling and statement timeout. Every other tool takes an optional database argument naming one \
            of them (default: the first).",
        params: &[],
        output_schema: list_databases_output_schema,
        run: tool_list_databases,
    },
];

/// Every tool that works in a database takes an optional `database` (see Several databases).
const DATABASE_PARAM: Param = Param {
    name: "database",
    kind: ParamKind::Text { default: None },
    required: false,
    description: "Which database to work in: a name list_databases shows (default: the first one)",
};

/// A tool's parameters: its own, then `database` for every tool but list_databases.
fn tool_params(tool: &ToolSpec) -> impl Iterator<Item = &Param> {
    let database = (tool.name != "list_databases").then_some(&DATABASE_PARAM);
    tool.params.iter().chain(database)
}

fn input_schema(tool: &ToolSpec) -> Value {
    let mut properties = Map::new();
    for param in tool_params(tool) {
        let schema = match param.kind {
            ParamKind::Text { default: None } => {
                json!({ "type": "string", "maxLength": MAX_TEXT_ARGUMENT_CHARS, "description": param.description })
            }
            ParamKind::Text {
                default: Some(default),
            } => {
                json!({ "type": "string", "maxLength": MAX_TEXT_ARGUMENT_CHARS, "default": default, "description": param.description })
            }
            ParamKind::Integer { default, min } => {
                json!({ "type": "integer", "minimum": min, "default": default, "description": param.description })
            }
            ParamKind::Flag { default } => {
                json!({ "type": "boolean", "default": default, "description": param.description })
            }
            ParamKind::Choice { choices, default } => {
                json!({ "type": "string", "enum": choices, "default": default, "description": param.description })
            }
            ParamKind::Names { max, choices } => {
                let items = if choices.is_empty() {
                    json!({ "type": "string", "maxLength": MAX_TEXT_ARGUMENT_CHARS })
                } else {
                    json!({ "type": "string", "enum": choices })
                };
                json!({ "type": "array", "items": items, "maxItems": max, "description": param.description })
            }
        };
        properties.insert(param.name.to_string(), schema);
    }
    let required: Vec<&str> = tool_params(tool)
        .filter(|p| p.required)
        .map(|p| p.name)
        .collect();
    json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false })
}

/// `tools/list`; with `views`, the tools that answer in the result shape name the result view.
fn tools_list_json(views: bool) -> Value {
    let tools: Vec<Value> = TOOLS
        .iter()
        .map(|tool| {
            let mut entry = json!({
                "name": tool.name,
                "title": tool.title,
                "description": tool.description,
                "inputSchema": input_schema(tool),
                "outputSchema": (tool.output_schema)(),
                "annotations": {
                    "title": tool.title,
                    "readOnlyHint": true,
                    "destructiveHint": false,
                    "idempotentHint": true,
                    "openWorldHint": false,
                },
            });
            if views && TOOLS_WITH_RESULT_VIEW.contains(&tool.name) {
                // the flat key is the extension's deprecated spelling, still read by older hosts
                entry["_meta"] = json!({
                    "ui": { "resourceUri": RESULT_VIEW_URI },
                    "ui/resourceUri": RESULT_VIEW_URI,
                });
            }
            entry
        })
        .collect();
    json!({ "tools": tools })
}

/// The `tools/list` answers, without and with the result view named, built once.
struct ToolLists {
    plain: EraAnswers,
    with_views: EraAnswers,
}

impl ToolLists {
    fn get(&self, views: bool) -> &EraAnswers {
        if views {
            &self.with_views
        } else {
            &self.plain
        }
    }
}

static TOOLS_LIST: Lazy<ToolLists> = Lazy::new(|| ToolLists {
    plain: EraAnswers::cacheable(tools_list_json(false)),
    with_views: EraAnswers::cacheable(tools_list_json(true)),
});

fn query_output_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "row_count": { "type": "integer" },
            "truncated": { "type": "boolean" },
            "truncated_reason": { "type": ["string", "null"], "enum": ["max_rows", "max_bytes", null] },
            "columns": { "type": "array", "items": {
                "type": "object",
                "properties": { "name": { "type": "string" }, "type": { "type": "string" } },
                "required": ["name", "type"],
            }},
            "rows": {
                "description": "objects: one object per row, keyed by column name; arrays, csv, markdown: one array \
                    per row, in the order of columns",
                "type": "array", "items": { "type": ["object", "array"] },
            },
            "format": {
                "description": "present when not objects: the format asked for (csv and markdown put the text in the \
                    text block and the rows here as arrays)",
                "type": "string", "enum": ResultFormat::NAMES,
            },
            "provenance": {
                "type": "object",
                "properties": {
                    "database": { "type": "string", "description": "current_database()" },
                    "server_label": { "type": ["string", "null"], "description": "MCP_SERVER_LABEL" },
                    "read_at": { "type": "string", "description": "the transaction's timestamp (UTC): the data is as of then" },
                    "db_ms": { "type": "number", "description": "milliseconds spent waiting for PostgreSQL" },
                },
                "required": ["database", "server_label", "read_at", "db_ms"],
            },
            "withheld_columns": { "type": "array", "items": { "type": "string" },
                "description": "sample_table: columns left out because this role may not read them" },
        },
        "required": ["row_count", "truncated", "truncated_reason", "columns", "rows", "provenance"],
    })
}

fn object_list_schema(key: &str, item_properties: Value) -> Value {
    json!({
        "type": "object",
        "properties": { key: { "type": "array", "items": { "type": "object", "properties": item_properties } } },
        "required": [key],
    })
}

/// The fields every paged answer ends with (see Paged answers).
fn with_paging(mut schema: Value) -> Value {
    let properties = &mut schema["properties"];
    properties["truncated"] = json!({ "type": "boolean" });
    properties["truncated_reason"] = json!({ "type": ["string", "null"],
        "enum": ["max_bytes", "limit", "max_columns", null],
        "description": "why the answer stopped early: the byte budget, the caller's limit, or the page of columns" });
    properties["next_cursor"] = json!({ "type": ["string", "null"],
        "description": "pass as cursor (same other arguments) for the rest" });
    schema
}

fn list_schemas_output_schema() -> Value {
    let count = json!({ "type": "integer" });
    with_paging(object_list_schema(
        "schemas",
        json!({ "schema": { "type": "string" }, "tables": count, "views": count, "materialized_views": count,
                "functions": count, "comment": { "type": ["string", "null"] } }),
    ))
}

fn list_tables_output_schema() -> Value {
    let mut schema = object_list_schema(
        "tables",
        json!({ "name": { "type": "string" }, "kind": { "type": "string" },
                "estimated_rows": { "type": ["integer", "null"] }, "comment": { "type": ["string", "null"] } }),
    );
    schema["properties"]["schema"] = json!({ "type": "string" });
    with_paging(schema)
}

fn describe_table_output_schema() -> Value {
    let text = json!({ "type": "string" });
    let names = json!({ "type": "array", "items": { "type": "string" } });
    let schema = json!({
        "type": "object",
        "properties": {
            "schema": text, "table": text, "kind": text, "comment": { "type": ["string", "null"] },
            "columns": { "type": "array", "items": { "type": "object", "properties": {
                "name": text, "type": text, "nullable": { "type": "boolean" },
                "readable": { "type": "boolean", "description": "false: withheld from this role by a column privilege" },
                "default": { "type": ["string", "null"] }, "comment": { "type": ["string", "null"] } } } },
            "primary_key": names,
            "foreign_keys": { "type": "array", "items": { "type": "object", "properties": {
                "name": text, "columns": names,
                "references": { "type": "object", "properties": { "schema": text, "table": text, "columns": names } } } } },
        },
        "required": ["schema", "table", "kind", "columns", "primary_key", "foreign_keys"],
    });
    with_paging(schema)
}

fn list_databases_output_schema() -> Value {
    let mut schema = object_list_schema(
        "databases",
        json!({ "name": { "type": "string" }, "label": { "type": "string" }, "default": { "type": "boolean" },
                "readable_schemas": { "type": ["array", "null"], "items": { "type": "string" } },
                "max_rows": { "type": "integer" }, "statement_timeout_ms": { "type": "integer" } }),
    );
    schema["properties"]["server_label"] = json!({ "type": ["string", "null"] });
    schema
}

fn list_functions_output_schema() -> Value {
    let mut schema = object_list_schema(
        "functions",
        json!({ "name": { "type": "string" }, "arguments": { "type": "string" }, "returns": { "type": ["string", "null"] },
                "kind": { "type": "string" }, "comment": { "type": ["string", "null"] } }),
    );
    schema["properties"]["schema"] = json!({ "type": "string" });
    with_paging(schema)
}

fn explain_output_schema() -> Value {
    let number = json!({ "type": "number" });
    let integer = json!({ "type": "integer" });
    let text_or_null = json!({ "type": ["string", "null"] });
    json!({
        "type": "object",
        "properties": {
            "analyzed": { "type": "boolean" },
            "summary": { "type": "object", "properties": {
                "total_cost": number, "startup_cost": number, "estimated_rows": integer,
                "actual_rows": integer, "planning_time_ms": number, "execution_time_ms": number,
                "buffers": { "type": "object" },
                "most_expensive": { "type": "array", "items": { "type": "object", "properties": {
                    "node": { "type": "string" }, "relation": text_or_null, "self_cost": number, "cost_share": number,
                    "estimated_rows": integer, "actual_rows": integer, "loops": integer, "self_time_ms": number,
                    "condition": text_or_null } } },
                "seq_scans": { "type": "array", "items": { "type": "object", "properties": {
                    "relation": { "type": "string" }, "relation_rows": { "type": ["integer", "null"] },
                    "relation_pages": integer, "estimated_rows": integer, "filter": text_or_null,
                    "indexes": { "type": "array", "items": { "type": "string" } } } } },
                "estimate_misses": { "type": "array", "items": { "type": "object", "properties": {
                    "node": { "type": "string" }, "relation": text_or_null, "estimated_rows": integer,
                    "actual_rows": integer, "factor": number,
                    "direction": { "type": "string", "enum": ["underestimate", "overestimate"] } } } },
            } },
            "plan": { "type": ["array", "null"], "description": "PostgreSQL's EXPLAIN (FORMAT JSON, VERBOSE) output without the per-node Output lists; null when it does not fit the budget" },
            "truncated": { "type": "boolean" },
            "truncated_reason": { "type": ["string", "null"], "enum": ["max_bytes", null] },
        },
        "required": ["analyzed", "summary", "plan", "truncated", "truncated_reason"],
    })
}

fn profile_columns_output_schema() -> Value {
    let fraction = json!({ "type": ["number", "null"] });
    let values = json!({ "type": ["array", "null"], "items": { "type": "object" } });
    with_paging(json!({
        "type": "object",
        "properties": {
            "schema": { "type": "string" }, "table": { "type": "string" }, "kind": { "type": "string" },
            "estimated_rows": { "type": ["integer", "null"] },
            "analyzed_at": { "type": ["string", "null"], "description": "when statistics were last gathered (UTC)" },
            "sample": { "type": ["object", "null"], "properties": {
                "method": { "type": "string" }, "percent": fraction, "rows": { "type": "integer" }, "max_rows": { "type": "integer" } } },
            "columns": { "type": "array", "items": { "type": "object", "properties": {
                "name": { "type": "string" }, "type": { "type": "string" }, "readable": { "type": "boolean" },
                "statistics": { "type": "boolean" }, "note": { "type": "string" },
                "null_fraction": fraction, "estimated_distinct": { "type": ["integer", "null"] },
                "most_common": values, "quantiles": { "type": ["object", "null"] },
                "average_width": { "type": ["integer", "null"] }, "correlation": fraction,
                "sample": { "type": "object", "properties": {
                    "null_fraction": { "type": "number" }, "distinct": { "type": "integer" }, "most_common": values } },
            }, "required": ["name", "type", "readable", "statistics"] } },
        },
        "required": ["schema", "table", "kind", "columns"],
    }))
}

fn find_join_path_output_schema() -> Value {
    let text = json!({ "type": "string" });
    json!({
        "type": "object",
        "properties": {
            "from": text, "to": text, "max_hops": { "type": "integer" },
            "paths": { "type": "array", "items": { "type": "object", "properties": {
                "hops": { "type": "integer" }, "join": text,
                "steps": { "type": "array", "items": { "type": "object", "properties": {
                    "from": text, "to": text, "constraint": text, "on": text,
                    "cardinality": { "type": "string", "enum": ["many-to-one", "one-to-many", "one-to-one"] } } } } } } },
            "note": { "type": ["string", "null"] },
        },
        "required": ["from", "to", "max_hops", "paths", "note"],
    })
}

fn search_objects_output_schema() -> Value {
    let text_or_null = json!({ "type": ["string", "null"] });
    with_paging(json!({
        "type": "object",
        "properties": {
            "query": { "type": "string" },
            "hits": { "type": "array", "items": { "type": "object", "properties": {
                "kind": { "type": "string" }, "schema": { "type": "string" }, "table": text_or_null,
                "name": { "type": "string" }, "qualified_name": { "type": "string" }, "type": text_or_null,
                "comment": text_or_null, "estimated_rows": { "type": ["integer", "null"] },
                "match": { "type": "string", "enum": ["exact", "prefix", "substring", "comment", "some words"] } } } },
            "total_matches": { "type": "integer" },
            "withheld_columns": { "type": "array", "items": { "type": "string" } },
        },
        "required": ["query", "hits", "total_matches"],
    }))
}

/// Validated arguments, defaults filled in.
struct Arguments(Map<String, Value>);

impl Arguments {
    fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }
    fn integer(&self, name: &str) -> i64 {
        self.0.get(name).and_then(Value::as_i64).unwrap_or(0)
    }
    fn flag(&self, name: &str) -> bool {
        self.0.get(name).and_then(Value::as_bool).unwrap_or(false)
    }
    /// A Names argument; None when the caller left it out.
    fn names(&self, name: &str) -> Option<Vec<&str>> {
        let items = self.0.get(name)?.as_array()?;
        Some(items.iter().filter_map(Value::as_str).collect())
    }
}

fn validate_arguments(tool: &ToolSpec, arguments: Option<&Value>) -> Result<Arguments, RpcError> {
    let expected = || {
        tool_params(tool)
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let no_arguments = Map::new();
    let given = match arguments {
        None | Some(Value::Null) => &no_arguments,
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(RpcError::invalid_params(format!(
                "{}: arguments must be an object",
                tool.name
            )))
        }
    };
    if let Some(unknown) = given
        .keys()
        .find(|k| !tool_params(tool).any(|p| p.name == k.as_str()))
    {
        return Err(RpcError::invalid_params(format!(
            "{}: unknown argument {:?} (expected: {})",
            tool.name,
            excerpt(unknown, MAX_ECHO_CHARS),
            if tool_params(tool).next().is_none() {
                "none".to_string()
            } else {
                expected()
            }
        )));
    }
    let mut checked = Map::new();
    for param in tool_params(tool) {
        let value = given.get(param.name).filter(|v| !v.is_null());
        let wrong = |wanted: &str| {
            RpcError::invalid_params(format!("{}: {} must be {wanted}", tool.name, param.name))
        };
        let accepted = match (param.kind, value) {
            (_, None) if param.required => {
                return Err(RpcError::invalid_params(format!(
                    "{}: missing required argument {:?}",
                    tool.name, param.name
                )))
            }
            (ParamKind::Text { .. } | ParamKind::Names { .. }, None) => None,
            (ParamKind::Integer { default, .. }, None) => Some(json!(default)),
            (ParamKind::Flag { default }, None) => Some(json!(default)),
            (ParamKind::Choice { default, .. }, None) => Some(json!(default)),
            (ParamKind::Text { .. }, Some(Value::String(text))) if !too_long(text) => {
                Some(json!(text))
            }
            (ParamKind::Text { .. }, Some(Value::String(_))) => {
                return Err(wrong(&format!(
                    "at most {MAX_TEXT_ARGUMENT_CHARS} characters (a longer text is refused \
                     to keep every request's memory bounded)"
                )))
            }
            (ParamKind::Text { .. }, Some(_)) => return Err(wrong("a string")),
            (ParamKind::Integer { min, .. }, Some(v)) => match whole_number(v) {
                Some(n) if n >= min => Some(json!(n)),
                Some(_) => return Err(wrong(&format!("at least {min}"))),
                None => return Err(wrong("an integer")),
            },
            (ParamKind::Flag { .. }, Some(Value::Bool(flag))) => Some(json!(flag)),
            (ParamKind::Flag { .. }, Some(_)) => return Err(wrong("true or false")),
            (ParamKind::Choice { choices, .. }, Some(Value::String(choice)))
                if choices.contains(&choice.as_str()) =>
            {
                Some(json!(choice))
            }
            (ParamKind::Choice { choices, .. }, Some(_)) => {
                return Err(wrong(&format!("one of {}", choices.join(", "))))
            }
            (ParamKind::Names { max, choices }, Some(Value::Array(items)))
                if items.len() <= max
                    && items
                        .iter()
                        .all(|i| i.as_str().is_some_and(|t| !too_long(t))) =>
            {
                let unknown = items
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|item| !choices.is_empty() && !choices.contains(item));
                if let Some(unknown) = unknown {
                    return Err(wrong(&format!(
                        "a list of {} (not {unknown:?})",
                        choices.join(", ")
                    )));
                }
                let mut distinct: Vec<Value> = Vec::with_capacity(items.len());
                for item in items {
                    if !distinct.contains(item) {
                        distinct.push(item.clone());
                    }
                }
                Some(Value::Array(distinct))
            }
            (ParamKind::Names { max, .. }, Some(_)) => {
                return Err(wrong(&format!("a list of at most {max} strings")))
            }
        };
        if let Some(value) = accepted {
            checked.insert(param.name.into(), value);
        }
    }
    Ok(Arguments(checked))
}

/// The longest text argument accepted, in characters (as JSON Schema's maxLength counts): far
/// above any analyst's SQL, and it bounds what the guard's lexer and the database driver hold.
const MAX_TEXT_ARGUMENT_CHARS: usize = 32_768;

fn too_long(text: &str) -> bool {
    // Cheap first: no string of at most that many bytes has more characters.
    text.len() > MAX_TEXT_ARGUMENT_CHARS && text.chars().count() > MAX_TEXT_ARGUMENT_CHARS
}

/// A JSON number with no fractional part, saturated to i64 (a huge max_rows is clamped later,
/// not refused).
fn whole_number(value: &Value) -> Option<i64> {
    if let Some(n) = value.as_i64() {
        return Some(n);
    }
    let f = value.as_f64().filter(|f| f.fract() == 0.0)?;
    Some(if f > 0.0 { i64::MAX } else { i64::MIN })
}

/// What a tool produced: its structured result as JSON text, the text blocks the model reads
/// when they are not that same JSON (CSV, Markdown), plus what the audit line reports.
struct ToolOutput {
    json: String,
    text_blocks: Vec<String>,
    rows: u64,
    truncated: Option<&'static str>,
    sql: Option<String>,
}

impl ToolOutput {
    fn document(json: String) -> ToolOutput {
        ToolOutput {
            json,
            text_blocks: Vec::new(),
            rows: 0,
            truncated: None,
            sql: None,
        }
    }
}

/// Why a tool call failed, in words an analyst can act on.
#[derive(Debug)]
enum ToolFailure {
    /// The SQL guard refused the statement before it reached the database.
    Guard(String),
    /// PostgreSQL refused or failed the statement.
    Database { message: String, sqlstate: String },
    /// No connection came free within MCP_POOL_WAIT_MS.
    Busy(Duration),
    /// The analyst already had MCP_MAX_INFLIGHT_PER_CALLER calls running for the whole wait.
    CallerBusy { limit: usize, waited: Duration },
    /// Over MCP_RATE_PER_CALLER; the next call is allowed in `retry_s` seconds.
    RateLimited { per_minute: u64, retry_s: u64 },
    /// The batch's shared deadline passed before this call could start.
    OutOfTime(Duration),
    /// The database cannot be reached.
    Unavailable(String),
    /// A well-formed request naming something that is not there or not readable.
    NotFound(String),
    /// The call ran, but its audit line could not be written (MCP_AUDIT_ON_FAILURE=refuse).
    Unaudited(String),
    /// The caller may not work as any database role (MCP_ANALYST_ROLES), or changed it.
    Forbidden(String),
    /// An argument the schema cannot express is wrong (a cursor from another call, a bad
    /// "schema.table"): answered as JSON-RPC -32602, like every other bad argument.
    InvalidArgument(String),
    /// MCP_MAX_PLAN_COST: the planner's estimate (None: unreadable plan) is above the limit.
    TooCostly { estimate: Option<f64>, limit: f64 },
}

impl std::fmt::Display for ToolFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolFailure::Guard(reason) => write!(f, "{reason}"),
            ToolFailure::Database { message, sqlstate } => write!(f, "{message} ({sqlstate})"),
            ToolFailure::Busy(waited) => write!(
                f,
                "server busy: no database connection came free within {} ms; retry shortly",
                waited.as_millis()
            ),
            ToolFailure::CallerBusy { limit, waited } => write!(
                f,
                "too many calls at once: you already have {limit} database call{} running \
                 (MCP_MAX_INFLIGHT_PER_CALLER = {limit}) and this one waited {} ms for one to finish; \
                 wait for your running calls, or send fewer at once",
                if *limit == 1 { "" } else { "s" },
                waited.as_millis()
            ),
            ToolFailure::RateLimited { per_minute, retry_s } => write!(
                f,
                "rate limit: at most {per_minute} tool calls per minute per analyst \
                 (MCP_RATE_PER_CALLER); retry in {retry_s} s"
            ),
            ToolFailure::OutOfTime(allowed) => write!(
                f,
                "not run: this batch's time ran out while the call waited for a database connection \
                 (a batch may take MCP_POOL_WAIT_MS + MCP_STATEMENT_TIMEOUT_MS = {} in all); send it \
                 in its own request",
                human_duration(allowed.as_millis() as u64)
            ),
            ToolFailure::Unavailable(reason) => write!(f, "database unavailable: {reason}"),
            ToolFailure::NotFound(what)
            | ToolFailure::Forbidden(what)
            | ToolFailure::InvalidArgument(what) => write!(f, "{what}"),
            ToolFailure::Unaudited(why) => write!(
                f,
                "audit log unavailable ({why}); the answer is withheld because this server does not serve unaudited calls (MCP_AUDIT_ON_FAILURE=refuse)"
            ),
            ToolFailure::TooCostly { estimate, limit } => {
                match estimate {
                    Some(cost) => write!(
                        f,
                        "not run: the planner estimates this query at cost {cost:.0}, above this server's \
                         limit of {limit} (MCP_MAX_PLAN_COST)"
                    )?,
                    None => write!(
                        f,
                        "not run: the planner's cost estimate could not be read, and this server \
                         refuses queries above cost {limit} (MCP_MAX_PLAN_COST)"
                    )?,
                }
                f.write_str(
                    ". Make it cheaper: filter on indexed columns (a time range, a key), aggregate \
                     (GROUP BY with count/sum/avg) instead of returning raw rows, join on keys rather \
                     than cross joining, or query a summary view; the explain tool shows where the cost is",
                )
            }
        }
    }
}

impl ToolFailure {
    fn outcome(&self) -> &'static str {
        match self {
            ToolFailure::Guard(_) => "rejected",
            ToolFailure::Database { sqlstate, message } if sqlstate == "57014" => {
                if message.starts_with("statement timeout") {
                    "timeout"
                } else {
                    "cancelled"
                }
            }
            ToolFailure::Database { .. } => "db_error",
            ToolFailure::Busy(_) => "busy",
            ToolFailure::CallerBusy { .. } => "caller_busy",
            ToolFailure::RateLimited { .. } => "rate_limited",
            ToolFailure::OutOfTime(_) => "out_of_time",
            ToolFailure::Unavailable(_) => "unavailable",
            ToolFailure::NotFound(_) => "not_found",
            ToolFailure::Unaudited(_) => "unaudited",
            ToolFailure::Forbidden(_) => "forbidden",
            ToolFailure::InvalidArgument(_) => "invalid_argument",
            ToolFailure::TooCostly { .. } => "too_costly",
        }
    }

    /// The limit this failure reports, as mcp_limits_hit_total names it.
    fn limit_hit(&self) -> Option<&'static str> {
        match self {
            ToolFailure::CallerBusy { .. } => Some("caller_share"),
            ToolFailure::RateLimited { .. } => Some("caller_rate"),
            ToolFailure::OutOfTime(_) => Some("batch_time"),
            ToolFailure::TooCostly { .. } => Some("plan_cost"),
            _ => None,
        }
    }
}

fn call_tool(context: &CallContext, params: &Value) -> Result<String, RpcError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("tools/call needs params.name"))?;
    let tool = TOOLS.iter().find(|t| t.name == name).ok_or_else(|| {
        let known: Vec<&str> = TOOLS.iter().map(|t| t.name).collect();
        RpcError::invalid_params(format!(
            "Unknown tool: {} (tools: {})",
            excerpt(name, MAX_ECHO_CHARS),
            known.join(", ")
        ))
    })?;
    let arguments = validate_arguments(tool, params.get("arguments"))?;
    let database = context
        .app
        .databases
        .find(arguments.text("database"))
        .map_err(|e| RpcError::invalid_params(format!("{}: {e}", tool.name)))?;
    let started = Instant::now();
    let tool_context = ToolContext {
        app: context.app,
        caller: context.caller,
        deadline: context.deadline,
        database,
    };
    let outcome = match context.app.rates.take(&context.caller.name, started) {
        Ok(()) => (tool.run)(&tool_context, &arguments),
        Err(retry_s) => Err(ToolFailure::RateLimited {
            per_minute: context.app.config.rate_per_caller,
            retry_s,
        }),
    };
    if let Some(limit) = outcome.as_ref().err().and_then(ToolFailure::limit_hit) {
        context.app.metrics.count_limit(limit);
    }
    let outcome = audit_call(
        context.app,
        tool,
        tool_context.caller,
        &arguments,
        (database, started),
        outcome,
    );
    Ok(match outcome {
        Err(ToolFailure::InvalidArgument(why)) => {
            return Err(RpcError::invalid_params(format!("{}: {why}", tool.name)))
        }
        Ok(output) => tool_result(&output),
        Err(failure) => {
            // A database error may quote the analyst's input (an invalid literal, say): cut it.
            let mut text = failure.to_string();
            if context.app.databases.named {
                text = format!("database {}: {text}", database.name);
            }
            let text = excerpt(&text, MAX_ERROR_TEXT_CHARS);
            json!({ "content": [{ "type": "text", "text": text }], "isError": true }).to_string()
        }
    })
}

/// Records the call (metrics, the stderr audit line, the audit log) before anything is answered.
/// A call the audit log could not record fails, unless MCP_AUDIT_ON_FAILURE=serve.
fn audit_call(
    app: &App,
    tool: &ToolSpec,
    caller: &Caller,
    arguments: &Arguments,
    (database, started): (&'static Database, Instant),
    outcome: Result<ToolOutput, ToolFailure>,
) -> Result<ToolOutput, ToolFailure> {
    let named_database: Option<&'static str> =
        app.databases.named.then_some(database.name.as_str());
    let (status, rows, truncated, sql) = match &outcome {
        Ok(out) => ("ok", out.rows, out.truncated, out.sql.as_deref()),
        Err(failure) => (failure.outcome(), 0, None, arguments.text("sql")),
    };
    let mut record = CallRecord {
        caller,
        tool: tool.name,
        arguments,
        status,
        rows,
        truncated,
        elapsed: started.elapsed(),
        sql,
        db_role: app
            .config
            .analyst_roles
            .as_ref()
            .and_then(|roles| roles.role_for(&caller.name)),
        database: named_database,
    };
    let written = app.audit_log.as_ref().map(|log| log.record_call(&record));
    let refused = match &written {
        Some(Err(e)) => {
            let refuse = app
                .audit_log
                .as_ref()
                .is_some_and(|l| l.config.refuse_unaudited);
            log_event(
                "error",
                if refuse {
                    "audit log write failed; the answer was withheld"
                } else {
                    "audit log write failed; answering anyway (MCP_AUDIT_ON_FAILURE=serve)"
                },
                &[("tool", tool.name), ("caller", &caller.name), ("error", e)],
            );
            refuse.then(|| e.clone())
        }
        _ => None,
    };
    let status = if refused.is_some() {
        "unaudited"
    } else {
        status
    };
    record.status = status;
    app.metrics.count_tool(
        (named_database, tool.name, status),
        record.elapsed,
        rows,
        outcome.as_ref().map_or(0, |o| {
            o.json.len() + o.text_blocks.iter().map(String::len).sum::<usize>()
        }),
    );
    log_audit_line(&record, written.and_then(Result::ok));
    match refused {
        Some(why) => Err(ToolFailure::Unaudited(why)),
        None => outcome,
    }
}

/// A successful tools/call result. The text blocks are the structuredContent JSON itself or, for
/// CSV and Markdown answers, their own text. Built in one buffer sized up front; a big answer
/// is otherwise copied and regrown repeatedly.
fn tool_result(output: &ToolOutput) -> String {
    let blocks: Vec<&str> = if output.text_blocks.is_empty() {
        vec![output.json.as_str()]
    } else {
        output.text_blocks.iter().map(String::as_str).collect()
    };
    let escaped: usize = blocks.iter().map(|b| b.len() + b.len() / 8 + 40).sum();
    let mut result = String::with_capacity(escaped + output.json.len() + 64);
    result.push_str(r#"{"content":["#);
    for (i, block) in blocks.iter().enumerate() {
        if i > 0 {
            result.push(',');
        }
        result.push_str(r#"{"type":"text","text":"#);
        push_json_string(&mut result, block);
        result.push('}');
    }
    result.push_str(r#"],"structuredContent":"#);
    result.push_str(&output.json);
    result.push_str(r#","isError":false}"#);
    result
}

/// Appends `text` as a JSON string literal (quotes included). This escapes every large answer
/// for its text block, so it skips clean runs eight bytes at a time and copies them whole.
fn push_json_string(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + bytes.len() / 8 + 2);
    out.push('"');
    let (mut run_start, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(&[a, b, c, d, e, f, g, h]) = bytes.get(i..i + 8) {
            if !word_may_need_escaping(u64::from_le_bytes([a, b, c, d, e, f, g, h])) {
                i += 8;
                continue;
            }
        }
        let byte = bytes[i];
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&text[run_start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        i += 1;
        run_start = i;
    }
    out.push_str(&text[run_start..]);
    out.push('"');
}

/// Whether any of eight bytes may be `"`, `\` or a control character (SWAR: a false positive
/// only sends the word to the byte-by-byte path; there are no false negatives).
fn word_may_need_escaping(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    below_space
        || has_zero_byte(word ^ (ONES * u64::from(b'"')))
        || has_zero_byte(word ^ (ONES * u64::from(b'\\')))
}

/// The limits of an analyst's statement: at most `rows` rows (the server ceiling applies).
fn answer_limits(ctx: &ToolContext, args: &Arguments, rows: i64) -> AnswerLimits {
    AnswerLimits {
        cap: (rows.max(1) as u64).min(ctx.config().max_rows),
        budget: ctx.config().max_result_bytes,
        max_plan_cost: ctx.config().max_plan_cost,
        format: ResultFormat::from_argument(args.text("format")),
    }
}

fn tool_query(ctx: &ToolContext, args: &Arguments) -> Result<ToolOutput, ToolFailure> {
    let sql = args.text("sql").unwrap_or("");
    let statement = check_sql(sql, &ctx.app.guard_policy()).map_err(ToolFailure::Guard)?;
    let limits = answer_limits(ctx, args, args.integer("max_rows"));
    let result = ctx
        .read_only(|session| session.run_statement(&statement, &limits))
        .map_err(|failure| explain_withheld_columns(ctx, failure))??;
    Ok(result.into_output(sql, ctx.config().server_label.as_deref()))
}

/// `permission denied for table X` on a table whose columns are only partly readable (withheld
/// personal data, SELECT * or a whole-row reference): says which columns are withheld and
/// which may be named instead. Any other failure is returned as it is.
fn explain_withheld_columns(ctx: &ToolContext, failure: ToolFailure) -> ToolFailure {
    let ToolFailure::Database { message, sqlstate } = &failure else {
        return failure;
    };
    let Some(table) = message
        .strip_prefix("permission denied for table ")
        .filter(|_| sqlstate == "42501")
    else {
        return failure;
    };
    let table = table.split(';').next().unwrap_or(table).trim();
    match ctx.read_only(|session| session.text_value(WITHHELD_COLUMNS_SQL, &[&table])) {
        Ok(Some(explained)) => ToolFailure::Database {
            message: format!("{message}: {explained}"),
            sqlstate: sqlstate.clone(),
        },
        _ => failure,
    }
}

fn tool_sample_table(ctx: &ToolContext, args: &Arguments) -> Result<ToolOutput, ToolFailure> {
    let (schema, table) = (
        args.text("schema").unwrap_or(""),
        args.text("table").unwrap_or(""),
    );
    let limits = answer_limits(ctx, args, args.integer("n"));
    let readable = ctx.config().readable_schemas.clone();
    let (sql, result, withheld) = ctx.read_only(|session| {
        let found = session.json_document(&SAMPLE_RELATION_SQL, &[&readable, &schema, &table])?;
        let Some(found) = found.and_then(|json| serde_json::from_str::<Value>(&json).ok()) else {
            return Ok(Err(relation_not_found(session, &readable, schema, table)?));
        };
        let names = |key: &str| -> Vec<String> {
            found[key].as_array().map_or_else(Vec::new, |names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect()
            })
        };
        let (columns, withheld) = (names("readable"), names("withheld"));
        let relation = found["relation"].as_str().unwrap_or_default();
        if columns.is_empty() {
            return Ok(Err(ToolFailure::Database {
                message: format!(
                    "permission denied: no column of {relation} is readable by this role"
                ),
                sqlstate: "42501".into(),
            }));
        }
        // Only the columns this role may read: SELECT * would be refused outright.
        let list = if withheld.is_empty() {
            "*".to_string()
        } else {
            columns.join(", ")
        };
        let sql = format!("SELECT {list} FROM {relation}");
        Ok(session
            .run_statement(&sql, &limits)?
            .map(|result| (sql, result, withheld)))
    })??;
    let output = result.into_output(&sql, ctx.config().server_label.as_deref());
    Ok(if withheld.is_empty() {
        output
    } else {
        output.with_field("withheld_columns", &json!(withheld))
    })
}

/// Answered from the configuration: no database is touched (so one that is down is listed too;
/// /readyz says which are up).
fn tool_list_databases(ctx: &ToolContext, _args: &Arguments) -> Result<ToolOutput, ToolFailure> {
    let databases: Vec<Value> = ctx
        .app
        .databases
        .all()
        .enumerate()
        .map(|(i, db)| {
            json!({
                "name": db.name,
                "label": db.label,
                "default": i == 0,
                "readable_schemas": db.config.readable_schemas,
                "max_rows": db.config.max_rows,
                "statement_timeout_ms": db.config.statement_timeout_ms,
            })
        })
        .collect();
    let server_label = ctx.app.config.server_label.as_deref();
    Ok(ToolOutput::document(
        json!({ "server_label": server_label, "databases": databases }).to_string(),
    ))
}

fn tool_list_schemas(ctx: &ToolContext, args: &Arguments) -> Result<ToolOutput, ToolFailure> {
    let readable = ctx.config().readable_schemas.clone();
    let after = cursor_text(args, "list_schemas", &[])?;
    let limits =
        PageLimits::new(ctx.config().max_result_bytes).leaving_room(16, "list_schemas", &[]);
    let page = ctx.read_only(|session| {
        session.json_page(
            &LIST_SCHEMAS_SQL,
            &[&readable, &after, &limits.comment_chars, &limits.rows],
            &limits,
        )
    })?;
    let head = format!(r#"{{"schemas":[{}]"#, page.items);
    Ok(page.finish(head, "list_schemas", &[]))
}

fn tool_list_tables(ctx: &ToolContext, args: &Arguments) -> Result<ToolOutput, ToolFailure> {
    let schema = args.text("schema").unwrap_or("");
    let readable = ctx.config().readable_schemas.clone();
    let after = cursor_text(args, "list_tables", &[schema])?;
    let limits = PageLimits::new(ctx.config().max_result_bytes).leaving_room(
        32 + schema.len() * 2,
        "list_tables",
        &[schema],
    );
    let page = ctx.read_only(|session| {
        let page = session.json_page(
            &LIST_TABLES_SQL,
            &[
                &readable,
                &schema,
                &after,
                &limits.comment_chars,
                &limits.rows,
            ],
            &limits,
        )?;
        // No rows: an empty schema, or one that is not there (or not readable).
        if page.count == 0 && !schema_is_readable(session, &readable, schema)? {
            return Ok(Err(schema_not_readable(session, &readable, schema)?));
        }
        Ok(Ok(page))
    })??;
    let head = format!(
        r#"{{"schema":{},"tables":[{}]"#,
        json_text(schema),
        page.items
    );
    Ok(page.finish(head, "list_tables", &[schema]))
}

fn tool_describe_table(ctx: &ToolContext, args: &Arguments) -> Result<ToolOutput, ToolFailure> {
    let (schema, table) = (
        args.text("schema").unwrap_or(""),
        args.text("table").unwrap_or(""),
    );
    let readable = ctx.config().readable_schemas.clone();
    let after = cursor_number(args, "describe_table", &[schema, table])?;
    let limits = PageLimits::new(ctx.config().max_result_bytes).leaving_room(
        32,
        "describe_table",
        &[schema, table],
    );
    let (head, keys, page) = ctx.read_only(|session| {
        let found = session.client.query_opt(
            DESCRIBE_TABLE_SQL.as_str(),
            &[&readable, &schema, &table, &limits.comment_chars],
        )?;
        let Some(row) = found else {
            return Ok(Err(relation_not_found(session, &readable, schema, table)?));
        };
        let (oid, head, keys): (u32, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        // The header and the keys are small: compacted, they leave the budget to the columns.
        let columns_limits = PageLimits {
            budget: limits
                .budget
                .saturating_sub((head.len() + keys.len()) as u64),
            ..limits
        };
        let page = session.json_page(
            &DESCRIBE_COLUMNS_SQL,
            &[&oid, &after, &limits.comment_chars, &limits.rows],
            &columns_limits,
        )?;
        Ok(Ok((compact_json(&head), compact_json(&keys), page)))
    })??;
    let head = format!(
        r#"{},"columns":[{}],{}"#,
        object_body_open(&head),
        page.items,
        object_body(&keys)
    );
    Ok(page.finish(head, "describe_table", &[schema, table]))
}

fn tool_list_functions(ctx: &ToolContext, args: &Arguments) -> Result<ToolOutput, ToolFailure> {
    let explicit = args.text("schema").map(String::from);
    let wanted = explicit.clone().unwrap_or_else(|| "reporting".into());
    let fall_back = explicit.is_none();
    let readable = ctx.config().readable_schemas.clone();
    let offset = i64::from(cursor_number(args, "list_functions", &[&wanted])?.unwrap_or(0));
    let limits = PageLimits::new(ctx.config().max_result_bytes).leaving_room(
        32 + wanted.len() * 2,
        "list_functions",
        &[&wanted],
    );
    let (schema, page) = ctx.read_only(|session| {
        let chosen = session.client.query_opt(
            CHOOSE_FUNCTION_SCHEMA_SQL.as_str(),
            &[&readable, &wanted, &fall_back],
        )?;
        let Some(row) = chosen else {
            return Ok(Err(schema_not_readable(session, &readable, &wanted)?));
        };
        let schema: String = row.try_get(0)?;
        let page = session.json_page(
            &LIST_FUNCTIONS_SQL,
            &[
                &readable,
                &schema,
                &offset,
                &limits.comment_chars,
                &limits.rows,
            ],
            &limits,
        )?;
        Ok(Ok((schema, page)))
    })??;
    let head = format!(
        r#"{{"schema":{},"functions":[{}]"#,
        json_text(&schema),
        page.items
    );
    Ok(page.finish(head, "list_functions", &[&wanted]))
}

fn schema_is_readable(
    session: &mut Session,
    readable: &Option<Vec<String>>,
    schema: &str,
) -> Result<bool, DbError> {
    Ok(session
        .json_document(&SCHEMA_IS_READABLE_SQL, &[readable, &schema])?
        .is_some())
}

fn schema_not_readable(
    session: &mut Session,
    readable: &Option<Vec<String>>,
    schema: &str,
) -> Result<ToolFailure, DbError> {
    let names = session
        .json_document(&READABLE_SCHEMA_NAMES_SQL, &[readable])?
        .unwrap_or_default();
    Ok(ToolFailure::NotFound(format!(
        "schema {schema:?} does not exist or is not readable; readable schemas: {names} (call list_schemas)"
    )))
}

fn relation_not_found(
    session: &mut Session,
    readable: &Option<Vec<String>>,
    schema: &str,
    table: &str,
) -> Result<ToolFailure, DbError> {
    if !schema_is_readable(session, readable, schema)? {
        return schema_not_readable(session, readable, schema);
    }
    Ok(ToolFailure::NotFound(format!(
        "no table, view or materialized view named {table:?} in schema {schema:?} (call list_tables; names are exact, without quotes)"
    )))
}

// ── Paged answers ────────────────────────────────────────────────────────────────────────────
// Catalog answers can be far larger than the result budget (20,000 tables in one schema, 1,600
// columns in one table). They come in pages: PostgreSQL serialises each item, items are added
// while they fit the byte budget, and an answer that stops early says so (truncated_reason
// "max_bytes", or "limit" for a caller's limit) with a `next_cursor` to continue from. An item
// is never cut, and every page holds at least one item, so paging always moves on (a comment
// longer than an eighth of the budget is shortened, with "…", so one item cannot fill a page).
// A cursor is opaque to clients: base64url of a small JSON array naming the tool, the
// arguments that shaped the listing and the key of the last item shown. A cursor from another
// call is refused as a bad argument (-32602) rather than silently listing something else.

/// The smallest item a listing produces: bounds how many rows a page asks PostgreSQL for.
const MIN_ITEM_BYTES: u64 = 40;
/// The longest key a cursor carries (a name of at most 63 bytes, JSON-escaped, or a number).
const MAX_KEY_BYTES: usize = 400;

/// What one page may hold, derived from MCP_MAX_RESULT_BYTES (and a caller's limit).
#[derive(Clone, Copy)]
struct PageLimits {
    budget: u64,
    /// Most items on a page; the statement asks for one row more, so a full page knows
    /// whether more follow.
    items: u64,
    rows: i64,
    /// What a page stopped by `items` says: "max_bytes" when `items` comes from the budget,
    /// "limit" when it is the caller's.
    items_reason: &'static str,
    /// Comments longer than this many characters are shortened.
    comment_chars: i32,
}

impl PageLimits {
    fn new(budget: u64) -> PageLimits {
        PageLimits::with_items(budget, budget / MIN_ITEM_BYTES + 1, "max_bytes")
    }

    /// The same limits with room left for what surrounds the items: `around` bytes of the
    /// answer's other fields, and the paging fields (whose cursor repeats the call's scope).
    fn leaving_room(self, around: usize, tool: &str, scope: &[&str]) -> PageLimits {
        let tail = 100 + (json!([tool, scope]).to_string().len() + MAX_KEY_BYTES) * 4 / 3;
        PageLimits {
            budget: self.budget.saturating_sub((around + tail) as u64),
            ..self
        }
    }

    /// At most `items` items (a caller's limit) and what fits the budget.
    fn with_items(budget: u64, items: u64, items_reason: &'static str) -> PageLimits {
        PageLimits {
            budget,
            items,
            rows: i64::try_from(items.saturating_add(1)).unwrap_or(i64::MAX),
            items_reason,
            comment_chars: i32::try_from((budget / 8).max(64)).unwrap_or(i32::MAX),
        }
    }
}

/// A page of JSON items, comma-joined, and where the next page starts.
struct Page {
    items: String,
    count: usize,
    /// The key of the last item shown, when more items follow.
    next: Option<Value>,
    truncated: Option<&'static str>,
    /// A listing's third column, read from its first row (search_objects: total matches).
    total: Option<i64>,
    /// A row without an item carries in its fourth column a JSON note on the whole listing
    /// (search_objects: the matching columns withheld from the role).
    note: Option<String>,
}

impl Page {
    /// Closes an answer opened by `head` (an object missing its final `}`) with the paging
    /// fields: truncated, truncated_reason, next_cursor.
    fn finish(self, mut head: String, tool: &str, scope: &[&str]) -> ToolOutput {
        let cursor = self
            .next
            .as_ref()
            .map(|key| encode_cursor(tool, scope, key));
        let _ = write!(
            head,
            r#","truncated":{},"truncated_reason":{},"next_cursor":{}}}"#,
            self.truncated.is_some(),
            self.truncated.map_or("null".to_string(), json_text),
            cursor.as_deref().map_or("null".to_string(), json_text),
        );
        ToolOutput {
            json: head,
            text_blocks: Vec::new(),
            rows: 0,
            truncated: self.truncated,
            sql: None,
        }
    }
}

impl Session<'_> {
    /// Runs a listing whose rows are (key as JSON text, item as JSON text), in order, and keeps
    /// the items that fit the page. The statement's LIMIT is `limits.rows`, one more than a
    /// page holds: a row past the last one kept means more follow. Rows are streamed, so a
    /// listing far larger than the budget never sits in memory.
    fn json_page(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        limits: &PageLimits,
    ) -> Result<Page, DbError> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut page = Page {
            items: String::new(),
            count: 0,
            next: None,
            truncated: None,
            total: None,
            note: None,
        };
        let mut last_key = None;
        let mut rows = self.client.query_raw(sql, params.iter().copied())?;
        while let Some(row) = rows.next()? {
            let key: Option<&str> = row.try_get(0)?;
            let item: Option<&str> = row.try_get(1)?;
            let Some(item) = item else {
                if row.len() > 3 {
                    page.note = row.try_get(3)?;
                }
                continue;
            };
            if page.count == 0 && row.len() > 2 {
                page.total = row.try_get(2)?;
            }
            if page.count > 0 {
                let full = page.count as u64 >= limits.items;
                if full || (page.items.len() + item.len() + 1) as u64 > limits.budget {
                    page.truncated = Some(if full {
                        limits.items_reason
                    } else {
                        "max_bytes"
                    });
                    page.next = last_key.take();
                    break;
                }
                page.items.push(',');
            }
            page.items.push_str(item);
            page.count += 1;
            last_key = key.and_then(|k| serde_json::from_str(k).ok());
        }
        Ok(page)
    }
}

/// The `cursor` argument decoded for `tool` and the arguments in `scope`: None without one.
fn cursor_key(args: &Arguments, tool: &str, scope: &[&str]) -> Result<Option<Value>, ToolFailure> {
    let Some(cursor) = args.text("cursor") else {
        return Ok(None);
    };
    let decoded = base64_decode(cursor)
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .ok_or_else(|| {
            ToolFailure::InvalidArgument(
                "cursor is not one this server issued: pass next_cursor from the previous answer unchanged, or leave it out to start from the beginning".into(),
            )
        })?;
    match decoded.as_array().map(Vec::as_slice) {
        Some([Value::String(named), Value::Array(given), key])
            if named == tool
                && given.len() == scope.len()
                && given.iter().zip(scope).all(|(g, s)| g.as_str() == Some(*s)) =>
        {
            Ok(Some(key.clone()))
        }
        _ => Err(foreign_cursor()),
    }
}

fn foreign_cursor() -> ToolFailure {
    ToolFailure::InvalidArgument(
        "cursor belongs to another call (another tool or other arguments): repeat the call with the same arguments as the one that returned it, or leave it out".into(),
    )
}

/// A cursor whose key is a name.
fn cursor_text(
    args: &Arguments,
    tool: &str,
    scope: &[&str],
) -> Result<Option<String>, ToolFailure> {
    match cursor_key(args, tool, scope)? {
        None => Ok(None),
        Some(Value::String(key)) => Ok(Some(key)),
        Some(_) => Err(foreign_cursor()),
    }
}

/// A cursor whose key is a position (a column number, an offset).
fn cursor_number(args: &Arguments, tool: &str, scope: &[&str]) -> Result<Option<i32>, ToolFailure> {
    match cursor_key(args, tool, scope)? {
        None => Ok(None),
        Some(key) => key
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(foreign_cursor),
    }
}

fn encode_cursor(tool: &str, scope: &[&str], key: &Value) -> String {
    base64url_encode(json!([tool, scope, key]).to_string().as_bytes())
}

/// base64url without padding (RFC 4648 §5); base64_decode reads it back.
fn base64url_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// `text` as a JSON string literal.
fn json_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_json_string(&mut out, text);
    out
}

/// `{"a":1,"b":2}` → `{"a":1,"b":2` (to append further members).
fn object_body_open(object: &str) -> &str {
    object.trim_end().strip_suffix('}').unwrap_or(object)
}

/// `{"a":1,"b":2}` → `"a":1,"b":2`.
fn object_body(object: &str) -> &str {
    let open = object_body_open(object);
    open.trim_start().strip_prefix('{').unwrap_or(open)
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// Analyst tools
// Contract: explain, profile_columns, find_join_path and search_objects answer what an analyst
// asks around a query — which table, what its columns hold, how two tables join, why a query
// is slow — from what PostgreSQL already knows (plans, pg_stats, the foreign-key graph, names
// and comments), so a model spends one call and a few hundred tokens instead of trial queries.
// They follow the six tools' conventions: database work in one read-only, rolled-back
// transaction through ToolContext (statement timeout and watchdog included), answers within
// the result budget (paged or truncated with a reason, never cut), -32602 for bad arguments,
// isError with the SQLSTATE for what the database refuses. Their SQL is in Catalog queries.
// ════════════════════════════════════════════════════════════════════════════════════════════

/// EXPLAIN's output column is `json`, which the driver does not decode as text by default.
struct JsonText(String);

impl<'a> postgres::types::FromSql<'a> for JsonText {
    fn from_sql(
        _: &postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<JsonText, Box<dyn std::error::Error + Sync + Send>> {
        Ok(JsonText(std::str::from_utf8(raw)?.to_string()))
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        *ty == postgres::types::Type::JSON
    }
}

/// How a value of a column becomes JSON in the profiles: as query shows it (readable_value_sql:
/// PostGIS values as GeoJSON and the like), else PostgreSQL's own to_json. pg_stats' most common
/// values and histogram are rendered by array_to_json instead: PostGIS types keep no such
/// statistics (their own ANALYZE stores extents), so nothing there needs this.
fn value_json_sql(value: &str, column: &ProfiledColumn) -> String {
    readable_value_sql(value, &column.type_schema, &column.type_name)
        .unwrap_or_else(|| format!("to_json({value})"))
}

/// A name as PostgreSQL would need it written, for display: quoted unless it is plain
/// lower-case (ready-to-paste SQL uses PostgreSQL's own quote_ident, which knows keywords).
fn display_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_string()
    } else {
        quote_ident(name)
    }
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

// ── explain ──────────────────────────────────────────────────────────────────────────────────

/// Nodes listed as the most expensive, estimate misses listed.
const EXPLAIN_TOP_NODES: usize = 5;
const EXPLAIN_TOP_MISSES: usize = 3;
/// A sequential scan is worth naming from this many estimated rows (or pages, when the
/// relation was never analysed).
const BIG_RELATION_ROWS: f64 = 10_000.0;
const BIG_RELATION_PAGES: i64 = 1_000;
/// Conditions quoted in the summary are cut to this many characters.
const CONDITION_CHARS: usize = 200;

fn tool_explain(ctx: &ToolContext, args: &Arguments) -> Result<ToolOutput, ToolFailure> {
    let sql = args.text("sql").unwrap_or("");
    if lex(sql).is_ok_and(|(tokens, _)| tokens.first() == Some(&Tok::Word("explain".into()))) {
        return Err(ToolFailure::Guard(
            "pass the statement itself, without EXPLAIN: this tool adds it (analyze: true runs EXPLAIN ANALYZE, buffers: true adds BUFFERS)".into(),
        ));
    }
    let statement = check_sql(sql, &ctx.app.guard_policy()).map_err(ToolFailure::Guard)?;
    let (analyze, buffers) = (args.flag("analyze"), args.flag("buffers"));
    let explain = format!(
        "EXPLAIN (FORMAT JSON, VERBOSE, ANALYZE {analyze}, BUFFERS {buffers})\n{statement}"
    );
    let (mut plan, relations) = ctx
        .read_only(|session| {
            let JsonText(text) = session
                .client
                .query_one(explain.as_str(), &[])?
                .try_get(0)?;
            let plan: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let scanned = seq_scanned_relations(&plan);
            let relations = if scanned.is_empty() {
                Vec::new()
            } else {
                let (schemas, names): (Vec<&str>, Vec<&str>) = scanned
                    .iter()
                    .map(|(s, n)| (s.as_str(), n.as_str()))
                    .unzip();
                session
                    .client
                    .query(RELATION_SIZES_SQL, &[&schemas, &names])?
                    .iter()
                    .map(RelationSize::from_row)
                    .collect::<Result<Vec<_>, DbError>>()?
            };
            Ok((plan, relations))
        })
        .map_err(|failure| explain_withheld_columns(ctx, failure))?;
    drop_node_outputs(&mut plan);
    let summary = plan_summary(&plan, analyze, buffers, &relations);
    let summary_json = summary.to_string();
    let plan_json = plan.to_string();
    let fits = (summary_json.len() + plan_json.len() + 128) as u64 <= ctx.config().max_result_bytes;
    let json = format!(
        r#"{{"analyzed":{analyze},"summary":{summary_json},"plan":{},"truncated":{},"truncated_reason":{}}}"#,
        if fits { plan_json.as_str() } else { "null" },
        !fits,
        if fits { "null" } else { r#""max_bytes""# },
    );
    Ok(ToolOutput {
        json,
        text_blocks: Vec::new(),
        rows: 0,
        truncated: (!fits).then_some("max_bytes"),
        sql: Some(sql.to_string()),
    })
}

/// What the catalog says about a relation the plan reads sequentially.
struct RelationSize {
    schema: String,
    name: String,
    rows: Option<f64>,
    pages: i64,
    indexes: Vec<String>,
}

impl RelationSize {
    fn from_row(row: &postgres::Row) -> Result<RelationSize, DbError> {
        Ok(RelationSize {
            schema: row.try_get(0)?,
            name: row.try_get(1)?,
            rows: row.try_get(2)?,
            pages: row.try_get(3)?,
            indexes: row.try_get(4)?,
        })
    }

    fn is_big(&self) -> bool {
        match self.rows {
            Some(rows) => rows >= BIG_RELATION_ROWS,
            None => self.pages >= BIG_RELATION_PAGES,
        }
    }
}

/// Every plan node, depth first, with its children.
fn plan_nodes(plan: &Value) -> Vec<&Map<String, Value>> {
    fn walk<'a>(node: &'a Value, out: &mut Vec<&'a Map<String, Value>>) {
        if let Some(object) = node.as_object() {
            out.push(object);
            for child in object
                .get("Plans")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                walk(child, out);
            }
        }
    }
    let mut nodes = Vec::new();
    for statement in plan.as_array().into_iter().flatten() {
        if let Some(root) = statement.get("Plan") {
            walk(root, &mut nodes);
        }
    }
    nodes
}

fn node_number(node: &Map<String, Value>, key: &str) -> f64 {
    node.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn node_children(node: &Map<String, Value>) -> impl Iterator<Item = &Map<String, Value>> {
    node.get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// (schema, relation) of every sequential scan in the plan, without repeats.
fn seq_scanned_relations(plan: &Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for node in plan_nodes(plan) {
        if node.get("Node Type").and_then(Value::as_str) != Some("Seq Scan") {
            continue;
        }
        let text = |key: &str| node.get(key).and_then(Value::as_str).map(String::from);
        if let (Some(schema), Some(name)) = (text("Schema"), text("Relation Name")) {
            if !found.iter().any(|(s, n)| *s == schema && *n == name) {
                found.push((schema, name));
            }
        }
    }
    found
}

/// VERBOSE names schemas (which the summary needs) but also lists every node's output
/// columns, which a reader rarely needs and which can double the plan's size.
fn drop_node_outputs(value: &mut Value) {
    match value {
        Value::Object(object) => {
            object.remove("Output");
            object.values_mut().for_each(drop_node_outputs);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_node_outputs),
        _ => {}
    }
}

/// "Seq Scan" plus what it reads: `fleet.positions`, an index, a CTE name.
fn node_label(node: &Map<String, Value>) -> (String, Option<String>) {
    let text = |key: &str| node.get(key).and_then(Value::as_str);
    let kind = text("Node Type").unwrap_or("?").to_string();
    let relation = match (text("Schema"), text("Relation Name")) {
        (Some(schema), Some(name)) => {
            Some(format!("{}.{}", display_ident(schema), display_ident(name)))
        }
        (None, Some(name)) => Some(display_ident(name)),
        _ => text("CTE Name")
            .or(text("Function Name"))
            .map(display_ident),
    };
    (kind, relation)
}

fn node_condition(node: &Map<String, Value>) -> Option<String> {
    [
        "Index Cond",
        "Filter",
        "Hash Cond",
        "Merge Cond",
        "Join Filter",
        "Recheck Cond",
        "One-Time Filter",
    ]
    .iter()
    .find_map(|key| node.get(*key).and_then(Value::as_str))
    .map(|condition| {
        if condition.chars().count() > CONDITION_CHARS {
            let cut: String = condition.chars().take(CONDITION_CHARS).collect();
            format!("{cut}…")
        } else {
            condition.to_string()
        }
    })
}

/// The compact summary: totals, the most expensive nodes (by their own cost, or their own time
/// when analysed), sequential scans of big relations with the indexes they have, and with
/// analyze the worst row-estimate misses.
fn plan_summary(plan: &Value, analyze: bool, buffers: bool, sizes: &[RelationSize]) -> Value {
    let statement = plan.get(0).cloned().unwrap_or(Value::Null);
    let Some(root) = statement.get("Plan").and_then(Value::as_object) else {
        return json!({});
    };
    let total_cost = node_number(root, "Total Cost");
    let mut summary = Map::new();
    summary.insert("total_cost".into(), json!(round_to(total_cost, 2)));
    summary.insert(
        "startup_cost".into(),
        json!(round_to(node_number(root, "Startup Cost"), 2)),
    );
    summary.insert(
        "estimated_rows".into(),
        json!(node_number(root, "Plan Rows") as u64),
    );
    if analyze {
        let rows = node_number(root, "Actual Rows") * node_number(root, "Actual Loops");
        summary.insert("actual_rows".into(), json!(rows as u64));
        for (key, field) in [
            ("planning_time_ms", "Planning Time"),
            ("execution_time_ms", "Execution Time"),
        ] {
            let ms = statement.get(field).and_then(Value::as_f64).unwrap_or(0.0);
            summary.insert(key.into(), json!(round_to(ms, 3)));
        }
    }
    if buffers && analyze {
        let blocks = |key: &str| node_number(root, key) as u64;
        summary.insert(
            "buffers".into(),
            json!({ "shared_hit": blocks("Shared Hit Blocks"), "shared_read": blocks("Shared Read Blocks"),
                    "temp_read": blocks("Temp Read Blocks"), "temp_written": blocks("Temp Written Blocks") }),
        );
    }
    let nodes = plan_nodes(plan);
    // A node's own share: its total minus its children's (times loops, when analysed).
    let own = |node: &Map<String, Value>| {
        let cost = node_number(node, "Total Cost")
            - node_children(node)
                .map(|c| node_number(c, "Total Cost"))
                .sum::<f64>();
        let time = |n: &Map<String, Value>| {
            node_number(n, "Actual Total Time") * node_number(n, "Actual Loops")
        };
        let own_time = time(node) - node_children(node).map(time).sum::<f64>();
        (cost.max(0.0), own_time.max(0.0))
    };
    let mut ranked: Vec<(&Map<String, Value>, f64, f64)> = nodes
        .iter()
        .map(|node| {
            let (cost, time) = own(node);
            (*node, cost, time)
        })
        .filter(|(_, cost, time)| {
            if analyze {
                *time > 0.0 || *cost > 0.0
            } else {
                *cost > 0.0
            }
        })
        .collect();
    ranked.sort_by(|a, b| {
        let key =
            |x: &(&Map<String, Value>, f64, f64)| if analyze { (x.2, x.1) } else { (x.1, x.2) };
        key(b)
            .partial_cmp(&key(a))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    // Nodes under 1 % of the plan's cost (or of its time, when analysed) are noise to a reader;
    // the most expensive node is always shown.
    let total_time: f64 = ranked.iter().map(|(_, _, time)| time).sum();
    let worth_naming = |(index, (_, cost, time)): &(usize, &(&Map<String, Value>, f64, f64))| {
        *index == 0
            || (total_cost > 0.0 && cost / total_cost >= 0.01)
            || (analyze && total_time > 0.0 && time / total_time >= 0.01)
    };
    let most_expensive: Vec<Value> = ranked
        .iter()
        .enumerate()
        .filter(worth_naming)
        .map(|(_, node)| node)
        .take(EXPLAIN_TOP_NODES)
        .map(|(node, cost, time)| {
            let (kind, relation) = node_label(node);
            let mut entry = Map::new();
            entry.insert("node".into(), json!(kind));
            entry.insert("relation".into(), json!(relation));
            entry.insert("self_cost".into(), json!(round_to(*cost, 2)));
            let share = if total_cost > 0.0 {
                cost / total_cost
            } else {
                0.0
            };
            entry.insert("cost_share".into(), json!(round_to(share, 2)));
            entry.insert(
                "estimated_rows".into(),
                json!(node_number(node, "Plan Rows") as u64),
            );
            if analyze {
                let loops = node_number(node, "Actual Loops");
                entry.insert(
                    "actual_rows".into(),
                    json!((node_number(node, "Actual Rows") * loops) as u64),
                );
                entry.insert("loops".into(), json!(loops as u64));
                entry.insert("self_time_ms".into(), json!(round_to(*time, 3)));
            }
            entry.insert("condition".into(), json!(node_condition(node)));
            Value::Object(entry)
        })
        .collect();
    summary.insert("most_expensive".into(), Value::Array(most_expensive));
    let mut seq_scans = Vec::new();
    for node in &nodes {
        if node.get("Node Type").and_then(Value::as_str) != Some("Seq Scan") {
            continue;
        }
        let text = |key: &str| node.get(key).and_then(Value::as_str).unwrap_or("");
        let Some(size) = sizes
            .iter()
            .find(|s| s.schema == text("Schema") && s.name == text("Relation Name"))
            .filter(|s| s.is_big())
        else {
            continue;
        };
        seq_scans.push(json!({
            "relation": format!("{}.{}", display_ident(&size.schema), display_ident(&size.name)),
            "relation_rows": size.rows.map(|r| r as u64),
            "relation_pages": size.pages,
            "estimated_rows": node_number(node, "Plan Rows") as u64,
            "filter": node.get("Filter").and_then(Value::as_str),
            "indexes": size.indexes,
        }));
    }
    summary.insert("seq_scans".into(), Value::Array(seq_scans));
    if analyze {
        let mut misses: Vec<(f64, Value)> = nodes
            .iter()
            .filter(|node| node_number(node, "Actual Loops") > 0.0)
            .filter_map(|node| {
                let estimated = node_number(node, "Plan Rows");
                let actual = node_number(node, "Actual Rows");
                let (e, a) = (estimated.max(1.0), actual.max(1.0));
                let factor = e.max(a) / e.min(a);
                (factor >= 2.0).then(|| {
                    let (kind, relation) = node_label(node);
                    let direction = if a > e { "underestimate" } else { "overestimate" };
                    (factor, json!({ "node": kind, "relation": relation, "estimated_rows": estimated as u64,
                                     "actual_rows": actual as u64, "factor": round_to(factor, 1), "direction": direction }))
                })
            })
            .collect();
        misses.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        let misses: Vec<Value> = misses
            .into_iter()
            .take(EXPLAIN_TOP_MISSES)
            .map(|(_, v)| v)
            .collect();
        summary.insert("estimate_misses".into(), Value::Array(misses));
    }
    Value::Object(summary)
}

// ── profile_columns ──────────────────────────────────────────────────────────────────────────

/// Columns profiled per page (a 1,600-column table takes several calls; each one is bounded).
const PROFILE_PAGE_COLUMNS: usize = 200;
/// Rows a sample reads at most, and roughly how many pages it asks TABLESAMPLE for when the
/// table's density is unknown.
const SAMPLE_ROWS: u64 = 10_000;
const SAMPLE_PAGES_UNKNOWN_DENSITY: f64 = 1_000.0;
/// Most common values shown per column.
const TOP_VALUES: usize = 5;
/// A sampled value longer than this (as JSON) is shown as the start of its text, with "…".
const SAMPLE_VALUE_BYTES: usize = 1024;

/// One column of the page being profiled, as the catalog and pg_stats describe it.
struct ProfiledColumn {
    attnum: i16,
    name: String,
    type_display: String,
    /// The type as a cast target, without modifiers (`numeric`, `"Sales".mood`).
    type_sql: String,
    readable: bool,
    /// Has a default btree operator class: ORDER BY, least/greatest and DISTINCT work.
    orderable: bool,
    /// min() and max() are defined for it (not for every orderable type: uuid, boolean, ranges).
    has_min_max: bool,
    is_array: bool,
    /// The type's schema and pg_type name (`_name` for an array of `name`), for
    /// readable_value_sql.
    type_schema: String,
    type_name: String,
    /// pg_stats' part of the profile as JSON object text, when the column has statistics.
    stats: Option<String>,
    /// Whether pg_stats holds values (histogram or most common) to take min/max from.
    stats_values: bool,
}

impl ProfiledColumn {
    fn from_row(row: &postgres::Row) -> Result<ProfiledColumn, DbError> {
        Ok(ProfiledColumn {
            attnum: row.try_get(0)?,
            name: row.try_get(1)?,
            type_display: row.try_get(2)?,
            type_sql: row.try_get(3)?,
            readable: row.try_get(4)?,
            orderable: row.try_get(5)?,
            is_array: row.try_get(6)?,
            stats: row.try_get(7)?,
            stats_values: row.try_get(8)?,
            has_min_max: row.try_get(9)?,
            type_schema: row.try_get(10)?,
            type_name: row.try_get(11)?,
        })
    }

    /// Typed comparisons (min/max) are only attempted where the type has an ordering and is
    /// not an array (array ordering is element-wise, and a point[] has no ordering at all).
    fn comparable(&self) -> bool {
        self.orderable && !self.is_array
    }
}

/// The relation being profiled.
struct ProfiledRelation {
    oid: u32,
    quoted: String,
    kind: String,
    estimated_rows: Option<i64>,
    analyzed_at: Option<String>,
    stats_hidden: bool,
    pages: i64,
    reltuples: f64,
    any_readable: bool,
}

impl ProfiledRelation {
    fn from_row(row: &postgres::Row) -> Result<ProfiledRelation, DbError> {
        Ok(ProfiledRelation {
            oid: row.try_get(0)?,
            quoted: row.try_get(1)?,
            kind: row.try_get(2)?,
            estimated_rows: row.try_get(3)?,
            analyzed_at: row.try_get(4)?,
            stats_hidden: row.try_get(5)?,
            pages: row.try_get(6)?,
            reltuples: row.try_get(7)?,
            any_readable: row.try_get(8)?,
        })
    }

    fn samplable(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "table" | "partitioned table" | "materialized view"
        )
    }

    /// TABLESAMPLE SYSTEM's percentage: enough pages for SAMPLE_ROWS rows at the table's
    /// density (half as many again, as pages vary), at most everything.
    fn sample_percent(&self) -> f64 {
        let pages = self.pages.max(1) as f64;
        let wanted_pages = if self.reltuples > 0.0 {
            (SAMPLE_ROWS as f64 / (self.reltuples / pages)).ceil() * 1.5
        } else {
            SAMPLE_PAGES_UNKNOWN_DENSITY
        };
        (100.0 * wanted_pages / pages).clamp(0.0001, 100.0)
    }

    /// Why a readable column has no statistics.
    fn no_statistics_note(&self) -> &'static str {
        if self.kind == "view" {
            "views have no statistics: sample: true reads rows instead"
        } else if self.stats_hidden {
            "statistics are hidden by row-level security on this table: sample: true reads the rows the policies allow"
        } else if self.analyzed_at.is_none() && self.estimated_rows.is_none() {
            "no statistics yet: the table has never been analysed (ANALYZE gathers them; sample: true reads a sample now)"
        } else {
            "no statistics for this column (added since the last ANALYZE, or too wide to be sampled); sample: true reads a sample"
        }
    }
}

fn tool_profile_columns(ctx: &ToolContext, args: &Arguments) -> Result<ToolOutput, ToolFailure> {
    let (schema, table) = (
        args.text("schema").unwrap_or(""),
        args.text("table").unwrap_or(""),
    );
    let wanted: Option<Vec<String>> = args
        .names("columns")
        .map(|names| names.into_iter().map(String::from).collect());
    let sample = args.flag("sample");
    // The cursor names the columns asked for by a digest: a list of 1,600 names would not fit one.
    let wanted_key: String = sha256(json!(wanted).to_string().as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let scope = [
        schema,
        table,
        if sample { "sample" } else { "stats" },
        wanted_key.as_str(),
    ];
    let after = cursor_number(args, "profile_columns", &scope)?;
    let readable = ctx.config().readable_schemas.clone();
    let budget = ctx.config().max_result_bytes;
    let rows = (PROFILE_PAGE_COLUMNS + 1) as i64;
    let profiled = ctx.read_only(|session| {
        let Some(row) = session
            .client
            .query_opt(PROFILE_RELATION_SQL.as_str(), &[&readable, &schema, &table])?
        else {
            return Ok(Err(relation_not_found(session, &readable, schema, table)?));
        };
        let relation = ProfiledRelation::from_row(&row)?;
        // A sample reads rows: of a table the role reads no column of, there are none to read.
        if sample && !relation.any_readable {
            return Ok(Err(nothing_readable(&relation.quoted)));
        }
        if let Some(names) = &wanted {
            let missing: Vec<String> = session
                .client
                .query_one(MISSING_COLUMNS_SQL, &[&relation.oid, names])?
                .try_get(0)?;
            if !missing.is_empty() {
                return Ok(Err(ToolFailure::NotFound(format!(
                    "no column {} in {schema}.{table} (call describe_table for its columns; names are exact, without quotes)",
                    missing.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ")
                ))));
            }
        }
        let mut columns = session
            .client
            .query(
                PROFILE_COLUMNS_SQL.as_str(),
                &[&schema, &table, &relation.oid, &wanted, &after, &rows, &relation.reltuples],
            )?
            .iter()
            .map(ProfiledColumn::from_row)
            .collect::<Result<Vec<_>, DbError>>()?;
        let more = columns.len() > PROFILE_PAGE_COLUMNS;
        columns.truncate(PROFILE_PAGE_COLUMNS);
        let extremes = stats_extremes(session, schema, table, &relation, &columns)?;
        let sampled = if sample {
            Some(sample_columns(session, &relation, &columns)?)
        } else {
            None
        };
        Ok(Ok((relation, columns, more, extremes, sampled)))
    })??;
    let (relation, columns, more, extremes, sampled) = profiled;
    let mut head = format!(
        r#"{{"schema":{},"table":{},"kind":{},"estimated_rows":{},"analyzed_at":{},"sample":{},"columns":["#,
        json_text(schema),
        json_text(table),
        json_text(&relation.kind),
        relation
            .estimated_rows
            .map_or("null".into(), |n| n.to_string()),
        relation
            .analyzed_at
            .as_deref()
            .map_or("null".into(), json_text),
        sampled
            .as_ref()
            .map_or("null".into(), |s| s.description.clone()),
    );
    let tail = 100 + (json!(["profile_columns", scope]).to_string().len() + MAX_KEY_BYTES) * 4 / 3;
    let mut shown = 0usize;
    let mut truncated = more.then_some("max_columns");
    for column in &columns {
        let item = column_profile_json(
            column,
            &relation,
            extremes.get(&column.attnum),
            sampled.as_ref().and_then(|s| s.columns.get(&column.attnum)),
        );
        if shown > 0 && (head.len() + item.len() + 1 + tail) as u64 > budget {
            truncated = Some("max_bytes");
            break;
        }
        if shown > 0 {
            head.push(',');
        }
        head.push_str(&item);
        shown += 1;
    }
    head.push(']');
    let next = truncated.and_then(|_| columns.get(shown.checked_sub(1)?).map(|c| json!(c.attnum)));
    let page = Page {
        items: String::new(),
        count: shown,
        next,
        truncated,
        total: None,
        note: None,
    };
    Ok(page.finish(head, "profile_columns", &scope))
}

/// One column's entry: name, type, whether it is readable, then pg_stats' profile (with
/// min/max), then the sample's.
fn column_profile_json(
    column: &ProfiledColumn,
    relation: &ProfiledRelation,
    extremes: Option<&(String, String)>,
    sampled: Option<&String>,
) -> String {
    let mut out = format!(
        r#"{{"name":{},"type":{},"readable":{}"#,
        json_text(&column.name),
        json_text(&column.type_display),
        column.readable
    );
    if !column.readable {
        out.push_str(
            r#","statistics":false,"note":"no SELECT privilege on this column: not profiled"}"#,
        );
        return out;
    }
    match &column.stats {
        Some(stats) => {
            let _ = write!(out, r#","statistics":true,{}"#, object_body(stats));
            let (min, max) =
                extremes.map_or(("null", "null"), |(lo, hi)| (lo.as_str(), hi.as_str()));
            let _ = write!(out, r#","min":{min},"max":{max}"#);
        }
        None => {
            let _ = write!(
                out,
                r#","statistics":false,"note":{}"#,
                json_text(relation.no_statistics_note())
            );
        }
    }
    if let Some(sampled) = sampled {
        let _ = write!(out, r#","sample":{sampled}"#);
    }
    out.push('}');
    out
}

/// Min and max of each comparable column from pg_stats: the histogram's ends widened by the
/// most common values (which the histogram leaves out), compared with the column's own type.
fn stats_extremes(
    session: &mut Session,
    schema: &str,
    table: &str,
    relation: &ProfiledRelation,
    columns: &[ProfiledColumn],
) -> Result<BTreeMap<i16, (String, String)>, DbError> {
    let wanted: Vec<&ProfiledColumn> = columns
        .iter()
        .filter(|c| c.readable && c.stats.is_some() && c.stats_values && c.comparable())
        .collect();
    let mut extremes = BTreeMap::new();
    if wanted.is_empty() {
        return Ok(extremes);
    }
    let branches: Vec<String> = wanted
        .iter()
        .map(|c| {
            let t = &c.type_sql;
            let (lo, hi) = (value_json_sql("e.lo", c), value_json_sql("e.hi", c));
            format!(
                "SELECT {attnum}::int2, {lo}::text, {hi}::text FROM st
                   CROSS JOIN LATERAL (SELECT st.histogram_bounds::text::{t}[] AS h) hb
                   CROSS JOIN LATERAL (SELECT least(hb.h[array_lower(hb.h, 1)],
                          (SELECT v FROM unnest(st.most_common_vals::text::{t}[]) v ORDER BY v LIMIT 1)) AS lo,
                        greatest(hb.h[array_upper(hb.h, 1)],
                          (SELECT v FROM unnest(st.most_common_vals::text::{t}[]) v ORDER BY v DESC LIMIT 1)) AS hi) e
                  WHERE st.attnum = {attnum}",
                attnum = c.attnum
            )
        })
        .collect();
    let attnums: Vec<i16> = wanted.iter().map(|c| c.attnum).collect();
    let sql = format!("{STATS_VALUES_CTE} {}", branches.join(" UNION ALL "));
    for row in session
        .client
        .query(sql.as_str(), &[&schema, &table, &relation.oid, &attnums])?
    {
        let attnum: i16 = row.try_get(0)?;
        let lo: Option<String> = row.try_get(1)?;
        let hi: Option<String> = row.try_get(2)?;
        extremes.insert(
            attnum,
            (
                lo.unwrap_or_else(|| "null".into()),
                hi.unwrap_or_else(|| "null".into()),
            ),
        );
    }
    Ok(extremes)
}

/// What a sample found: its description and each column's `sample` object (JSON text).
struct Sampled {
    description: String,
    columns: BTreeMap<i16, String>,
}

/// Exact null fraction, distinct count, min/max and top values over a bounded sample:
/// TABLESAMPLE SYSTEM of about SAMPLE_ROWS rows (REPEATABLE, so the pages of a wide table
/// describe the same rows), or the first SAMPLE_ROWS rows of a view or foreign table. One
/// statement for the whole page of columns, kept cheap to plan: counts and min/max are plain
/// aggregates over the sample, and the top values of every column come from one pass over the
/// sample unpivoted to (column, value as JSON).
fn sample_columns(
    session: &mut Session,
    relation: &ProfiledRelation,
    columns: &[ProfiledColumn],
) -> Result<Sampled, DbError> {
    let readable: Vec<&ProfiledColumn> = columns.iter().filter(|c| c.readable).collect();
    let (from, method) = if relation.samplable() {
        let percent = relation.sample_percent();
        (
            format!(
                "{} TABLESAMPLE SYSTEM ({percent:.4}) REPEATABLE (0)",
                relation.quoted
            ),
            format!(
                r#""method":"TABLESAMPLE SYSTEM","percent":{}"#,
                round_to(percent, 4)
            ),
        )
    } else {
        (
            relation.quoted.clone(),
            r#""method":"first rows","percent":null"#.to_string(),
        )
    };
    let list = if readable.is_empty() {
        "1 AS mcp_none".to_string()
    } else {
        readable
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} AS c{i}", quote_ident(&c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // A value as JSON text, shown as the start of its text when longer than SAMPLE_VALUE_BYTES.
    let bounded = |json: &str| {
        format!(
            "CASE WHEN octet_length(({json})::text) <= {SAMPLE_VALUE_BYTES} THEN ({json})::text \
             ELSE to_json(left(({json})::text, 200) || '…')::text END"
        )
    };
    let mut outputs = vec!["count(*)".to_string()];
    let mut unpivot = Vec::with_capacity(readable.len());
    for (i, c) in readable.iter().enumerate() {
        let v = format!("s.c{i}");
        let comparable = c.comparable();
        outputs.push(format!("count({v})"));
        outputs.push(if comparable {
            format!("count(DISTINCT {v})")
        } else {
            format!("count(DISTINCT {v}::text)")
        });
        let extreme = |direction: &str, aggregate: &str| {
            if !comparable {
                "NULL::text".to_string()
            } else if c.has_min_max {
                bounded(&value_json_sql(&format!("{aggregate}({v})"), c))
            } else {
                let first = format!("(SELECT x.c{i} FROM s x WHERE x.c{i} IS NOT NULL ORDER BY x.c{i} {direction} LIMIT 1)");
                bounded(&value_json_sql(&first, c))
            }
        };
        outputs.push(extreme("ASC", "min"));
        outputs.push(extreme("DESC", "max"));
        let value = value_json_sql(&v, c);
        unpivot.push(format!("({i}, {})", bounded(&value)));
    }
    let top = if unpivot.is_empty() {
        "ARRAY[]::text[]".to_string()
    } else {
        format!(
            "(SELECT array_agg(coalesce(t.top, '[]') ORDER BY g.i) FROM generate_series(0, {last}) g(i) LEFT JOIN (
               SELECT r.i, '[' || string_agg(format('{{\"value\":%s,\"count\":%s}}', r.v, r.n), ',' ORDER BY r.rank) || ']' AS top
                 FROM (SELECT u.i, u.v, count(*) AS n, row_number() OVER (PARTITION BY u.i ORDER BY count(*) DESC, u.v) AS rank
                         FROM s CROSS JOIN LATERAL (VALUES {values}) u(i, v) WHERE u.v IS NOT NULL GROUP BY u.i, u.v) r
                WHERE r.rank <= {TOP_VALUES} GROUP BY r.i) t USING (i))",
            last = unpivot.len() - 1,
            values = unpivot.join(", "),
        )
    };
    outputs.push(top);
    let sql = format!(
        "WITH s AS MATERIALIZED (SELECT {list} FROM {from} LIMIT {SAMPLE_ROWS}) SELECT {} FROM s",
        outputs.join(",\n ")
    );
    let row = session.client.query_one(sql.as_str(), &[])?;
    let total: i64 = row.try_get(0)?;
    let tops: Vec<String> = row.try_get(1 + readable.len() * 4)?;
    let mut sampled = Sampled {
        description: format!(r#"{{{method},"rows":{total},"max_rows":{SAMPLE_ROWS}}}"#),
        columns: BTreeMap::new(),
    };
    for (i, c) in readable.iter().enumerate() {
        let base = 1 + i * 4;
        let present: i64 = row.try_get(base)?;
        let distinct: i64 = row.try_get(base + 1)?;
        let min: Option<String> = row.try_get(base + 2)?;
        let max: Option<String> = row.try_get(base + 3)?;
        let fraction = if total > 0 {
            round_to((total - present) as f64 / total as f64, 4)
        } else {
            0.0
        };
        sampled.columns.insert(
            c.attnum,
            format!(
                r#"{{"null_fraction":{fraction},"distinct":{distinct},"min":{},"max":{},"most_common":{}}}"#,
                min.as_deref().unwrap_or("null"),
                max.as_deref().unwrap_or("null"),
                tops.get(i).map_or("[]", String::as_str),
            ),
        );
    }
    Ok(sampled)
}

// ── find_join_path ───────────────────────────────────────────────────────────────────────────

const DEFAULT_JOIN_HOPS: i64 = 3;
const MAX_JOIN_HOPS: usize = 6;
/// Paths shown, and paths enumerated at most before choosing them (dense graphs have
/// exponentially many shortest paths).
const MAX_JOIN_PATHS: usize = 5;
const MAX_ENUMERATED_PATHS: usize = 50;

/// Splits `schema.table` (either part may be "quoted", with "" for a quote inside; unquoted
/// parts are taken exactly, like every other tool's names) into its parts.
fn parse_relation_name(text: &str) -> Result<(Option<String>, String), String> {
    let mut parts = Vec::new();
    let chars: Vec<char> = text.trim().chars().collect();
    let mut i = 0;
    loop {
        let mut part = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("{text:?}: unterminated quoted name")),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        part.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        part.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(c) = chars.get(i).filter(|c| **c != '.') {
                if *c == '"' {
                    return Err(format!("{text:?}: a quote may only open a name"));
                }
                part.push(*c);
                i += 1;
            }
        }
        if part.is_empty() {
            return Err(format!("{text:?}: empty name (write schema.table)"));
        }
        parts.push(part);
        match chars.get(i) {
            None => break,
            Some('.') => i += 1,
            Some(_) => return Err(format!("{text:?}: expected '.' after a quoted name")),
        }
    }
    match parts.len() {
        1 => Ok((None, parts.remove(0))),
        2 => {
            let table = parts.remove(1);
            Ok((Some(parts.remove(0)), table))
        }
        _ => Err(format!(
            "{text:?}: write schema.table (quote a name that contains a dot)"
        )),
    }
}

/// A relation named by find_join_path's `from` or `to`.
struct JoinEnd {
    oid: u32,
    quoted: String,
    kind: String,
}

/// A withheld-columns refusal like sample_table's, for a relation the role reads nothing of.
fn nothing_readable(relation: &str) -> ToolFailure {
    ToolFailure::Database {
        message: format!("permission denied: no column of {relation} is readable by this role"),
        sqlstate: "42501".into(),
    }
}

fn resolve_join_end(
    session: &mut Session,
    readable: &Option<Vec<String>>,
    argument: &str,
    text: &str,
) -> Result<Result<JoinEnd, ToolFailure>, DbError> {
    let (schema, table) = match parse_relation_name(text) {
        Ok(parts) => parts,
        Err(why) => {
            return Ok(Err(ToolFailure::InvalidArgument(format!(
                "{argument}: {why}"
            ))))
        }
    };
    let rows = session
        .client
        .query(JOIN_RELATION_SQL.as_str(), &[readable, &schema, &table])?;
    match rows.as_slice() {
        [row] if !row.try_get::<_, bool>(3)? => Ok(Err(nothing_readable(row.try_get(1)?))),
        [row] => Ok(Ok(JoinEnd {
            oid: row.try_get(0)?,
            quoted: row.try_get(1)?,
            kind: row.try_get(2)?,
        })),
        [] => Ok(Err(match &schema {
            Some(schema) => relation_not_found(session, readable, schema, &table)?,
            None => ToolFailure::NotFound(format!(
                "{argument}: no readable table named {table:?} (write schema.table; search_objects finds tables by name)"
            )),
        })),
        several => {
            let names: Vec<String> = several
                .iter()
                .filter_map(|row| row.try_get::<_, String>(1).ok())
                .collect();
            Ok(Err(ToolFailure::InvalidArgument(format!(
                "{argument}: {table:?} is ambiguous ({}): write schema.table",
                names.join(", ")
            ))))
        }
    }
}

/// A foreign key as the path finder walks it: from the referencing (child) table to the
/// referenced (parent) one, or back.
#[derive(Clone, Copy)]
struct FkEdge {
    constraint: u32,
    child: u32,
    parent: u32,
}

/// One hop of a path: the edge and whether it is walked child → parent.
#[derive(Clone, Copy)]
struct Hop {
    edge: FkEdge,
    towards_parent: bool,
}

/// The shortest paths (fewest hops, at most `max_hops`) from `from` to `to` over foreign keys
/// walked in either direction, at most MAX_ENUMERATED_PATHS of them. From a table to itself:
/// its self-referencing keys.
fn shortest_fk_paths(edges: &[FkEdge], from: u32, to: u32, max_hops: usize) -> Vec<Vec<Hop>> {
    if from == to {
        return edges
            .iter()
            .filter(|e| e.child == from && e.parent == from)
            .map(|e| {
                vec![Hop {
                    edge: *e,
                    towards_parent: true,
                }]
            })
            .collect();
    }
    let mut neighbours: BTreeMap<u32, Vec<Hop>> = BTreeMap::new();
    for edge in edges.iter().filter(|e| e.child != e.parent) {
        neighbours.entry(edge.child).or_default().push(Hop {
            edge: *edge,
            towards_parent: true,
        });
        neighbours.entry(edge.parent).or_default().push(Hop {
            edge: *edge,
            towards_parent: false,
        });
    }
    let far_end = |hop: &Hop| {
        if hop.towards_parent {
            hop.edge.parent
        } else {
            hop.edge.child
        }
    };
    // Breadth first: the distance of every node reached, and the hops that reach it from the
    // previous layer (several when there are several shortest paths).
    let mut distance: BTreeMap<u32, usize> = BTreeMap::from([(from, 0)]);
    let mut arrivals: BTreeMap<u32, Vec<Hop>> = BTreeMap::new();
    let mut layer = vec![from];
    for depth in 1..=max_hops {
        let mut next = Vec::new();
        for node in &layer {
            for hop in neighbours.get(node).into_iter().flatten() {
                let target = far_end(hop);
                match distance.get(&target) {
                    Some(d) if *d < depth => continue,
                    Some(_) => {}
                    None => {
                        distance.insert(target, depth);
                        next.push(target);
                    }
                }
                arrivals.entry(target).or_default().push(*hop);
            }
        }
        if distance.contains_key(&to) || next.is_empty() {
            break;
        }
        layer = next;
    }
    if !distance.contains_key(&to) {
        return Vec::new();
    }
    // Walk back from `to` along arrivals; a hop's near end is the node it leaves.
    let near_end = |hop: &Hop| {
        if hop.towards_parent {
            hop.edge.child
        } else {
            hop.edge.parent
        }
    };
    let mut paths = Vec::new();
    let mut stack: Vec<(u32, Vec<Hop>)> = vec![(to, Vec::new())];
    while let Some((node, suffix)) = stack.pop() {
        if node == from {
            let mut path = suffix;
            path.reverse();
            paths.push(path);
            if paths.len() >= MAX_ENUMERATED_PATHS {
                break;
            }
            continue;
        }
        for hop in arrivals.get(&node).into_iter().flatten().rev() {
            let previous = near_end(hop);
            if distance
                .get(&previous)
                .is_some_and(|d| d + 1 == distance[&node])
            {
                let mut longer = suffix.clone();
                longer.push(*hop);
                stack.push((previous, longer));
            }
        }
    }
    paths
}

/// What the catalog says about a foreign key on a path.
struct FkDetail {
    name: String,
    child_quoted: String,
    parent_quoted: String,
    child_alias: String,
    parent_alias: String,
    child_columns: Vec<String>,
    parent_columns: Vec<String>,
    child_unique: bool,
}

fn tool_find_join_path(ctx: &ToolContext, args: &Arguments) -> Result<ToolOutput, ToolFailure> {
    let (from_text, to_text) = (
        args.text("from").unwrap_or(""),
        args.text("to").unwrap_or(""),
    );
    let max_hops = (args.integer("max_hops").max(1) as usize).min(MAX_JOIN_HOPS);
    let readable = ctx.config().readable_schemas.clone();
    let found = ctx.read_only(|session| {
        let from = match resolve_join_end(session, &readable, "from", from_text)? {
            Ok(end) => end,
            Err(failure) => return Ok(Err(failure)),
        };
        let to = match resolve_join_end(session, &readable, "to", to_text)? {
            Ok(end) => end,
            Err(failure) => return Ok(Err(failure)),
        };
        let mut edges = Vec::new();
        let mut withheld_edges = Vec::new();
        for row in session.client.query(FK_EDGES_SQL.as_str(), &[&readable])? {
            let edge = FkEdge {
                constraint: row.try_get(0)?,
                child: row.try_get(1)?,
                parent: row.try_get(2)?,
            };
            if row.try_get(3)? {
                edges.push(edge);
            } else {
                withheld_edges.push(edge);
            }
        }
        let paths = shortest_fk_paths(&edges, from.oid, to.oid, max_hops);
        // No path the role can use: is there one over keys it may not read? (Then say so.)
        let only_withheld = paths.is_empty() && !withheld_edges.is_empty() && {
            edges.extend(withheld_edges);
            !shortest_fk_paths(&edges, from.oid, to.oid, max_hops).is_empty()
        };
        let mut constraints: Vec<u32> = paths.iter().flatten().map(|h| h.edge.constraint).collect();
        constraints.sort_unstable();
        constraints.dedup();
        let mut details = BTreeMap::new();
        if !constraints.is_empty() {
            for row in session.client.query(FK_DETAILS_SQL, &[&constraints])? {
                let oid: u32 = row.try_get(0)?;
                details.insert(
                    oid,
                    FkDetail {
                        name: row.try_get(1)?,
                        child_quoted: row.try_get(2)?,
                        parent_quoted: row.try_get(3)?,
                        child_alias: row.try_get(4)?,
                        parent_alias: row.try_get(5)?,
                        child_columns: row.try_get(6)?,
                        parent_columns: row.try_get(7)?,
                        child_unique: row.try_get(8)?,
                    },
                );
            }
        }
        Ok(Ok((from, to, paths, details, only_withheld)))
    })??;
    let (from, to, paths, details, only_withheld) = found;
    let mut rendered: Vec<(String, Value)> = paths
        .iter()
        .filter_map(|path| render_join_path(path, &details))
        .collect();
    rendered.sort_by(|a, b| a.0.cmp(&b.0));
    rendered.dedup_by(|a, b| a.0 == b.0);
    let paths: Vec<Value> = rendered
        .into_iter()
        .take(MAX_JOIN_PATHS)
        .map(|(_, p)| p)
        .collect();
    let note = if !paths.is_empty() {
        None
    } else if only_withheld {
        Some(format!(
            "the foreign keys between {} and {} go over columns withheld from this role (or tables it cannot read): no join it may write follows them",
            from.quoted, to.quoted
        ))
    } else if ["view", "materialized view", "foreign table"].contains(&from.kind.as_str())
        || ["view", "materialized view", "foreign table"].contains(&to.kind.as_str())
    {
        Some("views, materialized views and foreign tables have no foreign keys: join them on columns that share names (describe_table shows them)".to_string())
    } else if from.oid == to.oid {
        Some(format!(
            "{} has no self-referencing foreign key",
            from.quoted
        ))
    } else {
        Some(format!(
            "no foreign-key path of at most {max_hops} hops between {} and {} (raise max_hops, up to {MAX_JOIN_HOPS}, or join on columns that share names)",
            from.quoted, to.quoted
        ))
    };
    let answer = json!({
        "from": from.quoted, "to": to.quoted, "max_hops": max_hops, "paths": paths, "note": note,
    });
    Ok(ToolOutput::document(answer.to_string()))
}

/// A path as ready-to-paste SQL (`FROM a JOIN b ON …`) and its steps, each with its
/// cardinality. A table that appears twice (a self-join) gets a second alias.
fn render_join_path(path: &[Hop], details: &BTreeMap<u32, FkDetail>) -> Option<(String, Value)> {
    let mut aliases: Vec<String> = Vec::new();
    let alias_for = |base: &str, aliases: &mut Vec<String>| {
        let mut alias = base.to_string();
        let mut n = 2;
        while aliases.contains(&alias) {
            alias = match base.strip_suffix('"') {
                Some(open) => format!("{open}_{n}\""),
                None => format!("{base}_{n}"),
            };
            n += 1;
        }
        aliases.push(alias.clone());
        alias
    };
    let first = details.get(&path.first()?.edge.constraint)?;
    let first_hop = path.first()?;
    let (start_quoted, start_base) = if first_hop.towards_parent {
        (&first.child_quoted, &first.child_alias)
    } else {
        (&first.parent_quoted, &first.parent_alias)
    };
    let mut previous_alias = alias_for(start_base, &mut aliases);
    let named = |quoted: &str, base: &str, alias: &str| {
        if alias == base {
            quoted.to_string()
        } else {
            format!("{quoted} AS {alias}")
        }
    };
    let mut sql = format!("FROM {}", named(start_quoted, start_base, &previous_alias));
    let mut steps = Vec::new();
    let mut previous_quoted = start_quoted.clone();
    for hop in path {
        let fk = details.get(&hop.edge.constraint)?;
        let (next_quoted, next_base) = if hop.towards_parent {
            (&fk.parent_quoted, &fk.parent_alias)
        } else {
            (&fk.child_quoted, &fk.child_alias)
        };
        let next_alias = alias_for(next_base, &mut aliases);
        let (child_alias, parent_alias) = if hop.towards_parent {
            (&previous_alias, &next_alias)
        } else {
            (&next_alias, &previous_alias)
        };
        let on = fk
            .child_columns
            .iter()
            .zip(&fk.parent_columns)
            .map(|(child, parent)| {
                let (child_side, parent_side) = (
                    format!("{child_alias}.{child}"),
                    format!("{parent_alias}.{parent}"),
                );
                if hop.towards_parent {
                    format!("{parent_side} = {child_side}")
                } else {
                    format!("{child_side} = {parent_side}")
                }
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        let cardinality = match (fk.child_unique, hop.towards_parent) {
            (true, _) => "one-to-one",
            (false, true) => "many-to-one",
            (false, false) => "one-to-many",
        };
        let _ = write!(
            sql,
            " JOIN {} ON {on}",
            named(next_quoted, next_base, &next_alias)
        );
        steps.push(
            json!({ "from": previous_quoted, "to": next_quoted, "constraint": fk.name,
                           "on": on, "cardinality": cardinality }),
        );
        previous_alias = next_alias;
        previous_quoted = next_quoted.clone();
    }
    Some((
        sql.clone(),
        json!({ "hops": path.len(), "join": sql, "steps": steps }),
    ))
}

// ── search_objects ───────────────────────────────────────────────────────────────────────────

const DEFAULT_SEARCH_LIMIT: i64 = 20;
const MAX_SEARCH_LIMIT: u64 = 100;
/// Matching columns withheld from the role named at most (on the first page).
const SEARCH_WITHHELD_NAMES: usize = 40;
const MAX_SEARCH_QUERY_CHARS: usize = 200;
/// Comments in search hits are cut to this many characters (describe_table shows them whole).
const SEARCH_COMMENT_CHARS: i32 = 300;
const SEARCH_KINDS: &[&str] = &[
    "schema",
    "table",
    "view",
    "materialized view",
    "foreign table",
    "column",
    "function",
];

/// The query as the search SQL uses it: lower-cased names it may equal exactly, a prefix
/// pattern, and one LIKE pattern per word (words reduced to a crude singular, so "costs"
/// finds `cost` and "categories" finds `category`).
struct SearchTerms {
    exact: Vec<String>,
    prefix: String,
    words: Vec<String>,
}

fn search_terms(query: &str) -> SearchTerms {
    let lowered = query.trim().to_lowercase();
    let words: Vec<&str> = lowered
        .split(|c: char| c.is_whitespace() || "_.-,;:/".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    let like_escape = |text: &str| {
        text.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    };
    let singular = |word: &str| -> String {
        if let Some(stem) = word.strip_suffix("ies").filter(|s| s.len() >= 2) {
            format!("{stem}y")
        } else if word.len() > 3 && word.ends_with('s') && !word.ends_with("ss") {
            word[..word.len() - 1].to_string()
        } else {
            word.to_string()
        }
    };
    let joined = words.join("_");
    let mut exact = vec![lowered.clone(), joined.clone()];
    exact.dedup();
    // A one-letter word ("t" of "t_01000") would match nearly every name: it only counts when
    // the query has nothing longer.
    let meaningful: Vec<&str> = if words.iter().any(|w| w.chars().count() > 1) {
        words
            .iter()
            .copied()
            .filter(|w| w.chars().count() > 1)
            .collect()
    } else {
        words.clone()
    };
    SearchTerms {
        exact,
        prefix: format!("{}%", like_escape(&joined)),
        words: meaningful
            .iter()
            .map(|w| format!("%{}%", like_escape(&singular(w))))
            .collect(),
    }
}

fn tool_search_objects(ctx: &ToolContext, args: &Arguments) -> Result<ToolOutput, ToolFailure> {
    let query = args.text("query").unwrap_or("").trim().to_string();
    if query.is_empty() || !query.chars().any(char::is_alphanumeric) {
        return Err(ToolFailure::InvalidArgument(
            "query must contain a word to look for, e.g. \"fuel\"".into(),
        ));
    }
    if query.chars().count() > MAX_SEARCH_QUERY_CHARS {
        return Err(ToolFailure::InvalidArgument(format!(
            "query is longer than {MAX_SEARCH_QUERY_CHARS} characters: search for a few words"
        )));
    }
    let schema = args.text("schema").map(String::from);
    let kinds: Option<Vec<String>> = args
        .names("kinds")
        .filter(|k| !k.is_empty())
        .map(|k| k.into_iter().map(String::from).collect());
    let limit = (args.integer("limit").max(1) as u64).min(MAX_SEARCH_LIMIT);
    let kinds_key = json!(kinds).to_string();
    let scope = [
        query.as_str(),
        schema.as_deref().unwrap_or(""),
        kinds_key.as_str(),
    ];
    let offset = cursor_number(args, "search_objects", &scope)?.unwrap_or(0);
    let terms = search_terms(&query);
    let limits = PageLimits {
        comment_chars: SEARCH_COMMENT_CHARS,
        ..PageLimits::with_items(ctx.config().max_result_bytes, limit, "limit").leaving_room(
            64 + query.len() * 2,
            "search_objects",
            &scope,
        )
    };
    let readable = ctx.config().readable_schemas.clone();
    let offset = i64::from(offset);
    let page = ctx.read_only(|session| {
        if let Some(schema) = &schema {
            if !schema_is_readable(session, &readable, schema)? {
                return Ok(Err(schema_not_readable(session, &readable, schema)?));
            }
        }
        let page = session.json_page(
            &SEARCH_OBJECTS_SQL,
            &[
                &readable,
                &schema,
                &kinds,
                &terms.exact,
                &terms.prefix,
                &terms.words,
                &offset,
                &limits.rows,
                &limits.comment_chars,
            ],
            &limits,
        )?;
        Ok(Ok(page))
    })??;
    let mut head = format!(
        r#"{{"query":{},"hits":[{}],"total_matches":{}"#,
        json_text(&query),
        page.items,
        page.total.map_or("0".to_string(), |n| n.to_string()),
    );
    if let Some(withheld) = &page.note {
        let _ = write!(head, r#","withheld_columns":{withheld}"#);
    }
    Ok(page.finish(head, "search_objects", &scope))
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// Catalog queries
// Contract: every introspection statement the tools run lives here, so what the server reads
// from the catalogs (and what a later rule — a per-analyst role, withheld columns — must
// change) is in one place. PostgreSQL builds each answer's JSON (row_to_json is compact and
// keeps column order), so names and values arrive exactly as the catalog holds them. $1 is
// always MCP_READABLE_SCHEMAS (NULL: every schema the role has USAGE on, minus system
// schemas). Each statement is one round trip whatever the size of the schema: no query per
// table or per column, comments read by a join on pg_description rather than a function call
// per row, and listings keyset-paged (`… > $after ORDER BY … LIMIT $rows`) so a page of a
// 20,000-table schema costs what a page of a small one does.
// ════════════════════════════════════════════════════════════════════════════════════════════

const READABLE: &str = "(CASE WHEN $1::text[] IS NULL \
     THEN has_schema_privilege(n.oid, 'USAGE') AND n.nspname <> 'information_schema' \
          AND n.nspname !~ '^(pg_|_timescaledb)' \
     ELSE n.nspname = ANY($1::text[]) END)";

/// READABLE for a schema row aliased `alias` (READABLE is `readable_schema_sql("n")`).
fn readable_schema_sql(alias: &str) -> String {
    READABLE
        .replace("(n.oid", &format!("({alias}.oid"))
        .replace(" n.nspname", &format!(" {alias}.nspname"))
}

const RELATION_KIND: &str =
    "CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' \
     WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' END";

/// The estimated row count of relation `c` (a partitioned table: the sum over its partitions;
/// NULL when never analysed or for views).
const ESTIMATED_ROWS: &str = "CASE WHEN c.relkind = 'p' THEN \
     (SELECT sum(greatest(ch.reltuples, 0))::bigint FROM pg_inherits i JOIN pg_class ch ON ch.oid = i.inhrelid WHERE i.inhparent = c.oid) \
     WHEN c.relkind IN ('r','m','f') AND c.reltuples >= 0 THEN c.reltuples::bigint END";

const NOT_EXTENSION_MEMBER: &str =
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass \
     AND d.objid = p.oid AND d.deptype = 'e')";

/// The comment of object `oid` of catalog `catalog` (sub-object `sub`, e.g. a column number),
/// shortened past `cap` characters (see Paged answers), as a lookup per row: an index probe
/// whatever the catalog's statistics say (freshly created thousands of objects can leave
/// them stale enough for a join to scan pg_description once per row). Only what is shown
/// pays: a listing's LIMIT comes first.
fn comment_of(catalog: &str, oid: &str, sub: &str, cap: &str) -> String {
    format!(
        "(SELECT {text} FROM pg_description d WHERE d.objoid = {oid} AND d.classoid = '{catalog}'::regclass \
         AND d.objsubid = {sub})",
        text = capped_comment("d.description", cap)
    )
}

/// The same as a join, for search_objects, which reads every comment to match it.
fn comment_join(alias: &str, catalog: &str, oid: &str, sub: &str) -> String {
    format!(
        "LEFT JOIN pg_description {alias} ON {alias}.objoid = {oid} \
         AND {alias}.classoid = '{catalog}'::regclass AND {alias}.objsubid = {sub}"
    )
}

/// `text` (a comment), shortened past `cap` characters with "…".
fn capped_comment(text: &str, cap: &str) -> String {
    format!("CASE WHEN length({text}) > {cap} THEN left({text}, {cap}) || '…' ELSE {text} END")
}

/// $2 after (schema name), $3 comment cap, $4 rows.
static LIST_SCHEMAS_SQL: Lazy<String> = Lazy::new(|| {
    format!(
        "WITH s AS (SELECT n.oid, n.nspname FROM pg_namespace n
                     WHERE {READABLE} AND ($2::text IS NULL OR n.nspname > $2::text::name)
                     ORDER BY n.nspname LIMIT $4),
              rel AS (SELECT c.relnamespace AS oid,
                        count(*) FILTER (WHERE c.relkind IN ('r','p','f') AND NOT c.relispartition) AS tables,
                        count(*) FILTER (WHERE c.relkind = 'v') AS views,
                        count(*) FILTER (WHERE c.relkind = 'm') AS materialized_views
                      FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM s) GROUP BY 1),
              fun AS (SELECT p.pronamespace AS oid, count(*) AS functions FROM pg_proc p
                      WHERE p.pronamespace IN (SELECT oid FROM s) AND {NOT_EXTENSION_MEMBER} GROUP BY 1)
         SELECT to_json(x.schema)::text, row_to_json(x)::text FROM (
           SELECT s.nspname AS schema, coalesce(rel.tables, 0) AS tables, coalesce(rel.views, 0) AS views,
                  coalesce(rel.materialized_views, 0) AS materialized_views, coalesce(fun.functions, 0) AS functions,
                  {comment} AS comment
             FROM s LEFT JOIN rel USING (oid) LEFT JOIN fun USING (oid)) x
         ORDER BY x.schema",
        comment = comment_of("pg_namespace", "s.oid", "0", "$3"),
    )
});

/// $2 schema, $3 after (table name), $4 comment cap, $5 rows.
static LIST_TABLES_SQL: Lazy<String> = Lazy::new(|| {
    format!(
        "SELECT to_json(x.name)::text, row_to_json(x)::text FROM (
           SELECT c.relname AS name, {RELATION_KIND} AS kind, {ESTIMATED_ROWS} AS estimated_rows, {comment} AS comment
             FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
            WHERE n.nspname = $2 AND {READABLE} AND c.relkind IN ('r','p','v','m','f') AND NOT c.relispartition
              AND ($3::text IS NULL OR c.relname > $3::text::name)
            ORDER BY c.relname LIMIT $5) x
         ORDER BY x.name",
        comment = comment_of("pg_class", "c.oid", "0", "$4"),
    )
});

/// The header of describe_table: $2 schema, $3 table, $4 comment cap → (oid, {schema, table,
/// kind, comment}, {primary_key, foreign_keys}).
static DESCRIBE_TABLE_SQL: Lazy<String> = Lazy::new(|| {
    let column_names = |keys: &str, rel: &str| {
        format!(
            "(SELECT coalesce(json_agg(a.attname ORDER BY k.ord), '[]'::json) FROM unnest({keys}) WITH ORDINALITY k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.attnum)"
        )
    };
    format!(
        "SELECT c.oid, json_build_object('schema', n.nspname, 'table', c.relname, 'kind', {RELATION_KIND},
           'comment', {comment})::text,
           json_build_object(
           'primary_key', coalesce((SELECT {pk} FROM pg_constraint con WHERE con.conrelid = c.oid AND con.contype = 'p'), '[]'::json),
           'foreign_keys', coalesce((SELECT json_agg(json_build_object('name', con.conname, 'columns', {fk_cols},
               'references', json_build_object('schema', fn.nspname, 'table', fc.relname, 'columns', {fk_refs})) ORDER BY con.conname)
             FROM pg_constraint con JOIN pg_class fc ON fc.oid = con.confrelid JOIN pg_namespace fn ON fn.oid = fc.relnamespace
             WHERE con.conrelid = c.oid AND con.contype = 'f'), '[]'::json))::text
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $2 AND c.relname = $3 AND c.relkind IN ('r','p','v','m','f') AND {READABLE}",
        comment = comment_of("pg_class", "c.oid", "0", "$4"),
        pk = column_names("con.conkey", "con.conrelid"),
        fk_cols = column_names("con.conkey", "con.conrelid"),
        fk_refs = column_names("con.confkey", "con.confrelid"),
    )
});

/// describe_table's columns: $1 relation oid, $2 after (column number), $3 comment cap, $4 rows.
static DESCRIBE_COLUMNS_SQL: Lazy<String> = Lazy::new(|| {
    format!(
        "SELECT a.attnum::text, row_to_json(x)::text
           FROM pg_attribute a
          CROSS JOIN LATERAL (SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
                NOT a.attnotnull AS nullable, has_column_privilege(a.attrelid, a.attnum, 'SELECT') AS readable,
                (SELECT pg_get_expr(def.adbin, def.adrelid) FROM pg_attrdef def
                  WHERE def.adrelid = a.attrelid AND def.adnum = a.attnum) AS default,
                {comment} AS comment) x
          WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND ($2::int IS NULL OR a.attnum > $2)
          ORDER BY a.attnum LIMIT $4",
        comment = comment_of("pg_class", "a.attrelid", "a.attnum", "$3"),
    )
});

/// list_functions' schema: $2 wanted, $3 fall back to the first readable schema.
static CHOOSE_FUNCTION_SCHEMA_SQL: Lazy<String> = Lazy::new(|| {
    format!(
        "SELECT n.nspname::text FROM pg_namespace n WHERE {READABLE} AND (n.nspname = $2 OR $3)
         ORDER BY n.nspname = $2 DESC, n.nspname LIMIT 1"
    )
});

/// $2 schema (chosen by CHOOSE_FUNCTION_SCHEMA_SQL), $3 offset, $4 comment cap, $5 rows. Paged by
/// position: overloads share a name, and their argument lists are too long for a cursor.
static LIST_FUNCTIONS_SQL: Lazy<String> = Lazy::new(|| {
    format!(
        "SELECT (row_number() OVER (ORDER BY x.name, x.arguments))::text, row_to_json(x)::text FROM (
           SELECT p.proname AS name, pg_get_function_arguments(p.oid) AS arguments,
                  pg_get_function_result(p.oid) AS returns,
                  CASE p.prokind WHEN 'f' THEN 'function' WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window' END AS kind,
                  {comment} AS comment
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = $2 AND {READABLE} AND {NOT_EXTENSION_MEMBER}) x
          ORDER BY x.name, x.arguments OFFSET $3 LIMIT $5",
        comment = comment_of("pg_proc", "p.oid", "0", "$4"),
    )
});

/// The relation to sample: its quoted name, the quoted columns this role may read and the
/// names of those it may not (withheld by column privileges).
static SAMPLE_RELATION_SQL: Lazy<String> = Lazy::new(|| {
    format!(
        "SELECT json_build_object('relation', format('%I.%I', n.nspname, c.relname),
           'readable', coalesce((SELECT json_agg(quote_ident(a.attname) ORDER BY a.attnum) FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND has_column_privilege(c.oid, a.attnum, 'SELECT')), '[]'::json),
           'withheld', coalesce((SELECT json_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND NOT has_column_privilege(c.oid, a.attnum, 'SELECT')), '[]'::json))::text
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $2 AND c.relname = $3 AND c.relkind IN ('r','p','v','m','f') AND {READABLE}"
    )
});

/// After `permission denied for table X`: each visible relation named X whose columns this role
/// may read only in part, with what is withheld and what may be read ($1: the name; at most 40
/// columns of each kind are named, so a wide table's message stays short).
const WITHHELD_COLUMNS_SQL: &str = "SELECT string_agg(format('columns %s of %I.%I are withheld from this role, so SELECT * and whole-row references are refused; name the columns you may read: SELECT %s FROM %I.%I',
       w.withheld, n.nspname, c.relname, w.readable, n.nspname, c.relname), '; ' ORDER BY n.nspname)
   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
   LATERAL (SELECT array_to_string((array_agg(quote_ident(a.attname) ORDER BY a.attnum) FILTER (WHERE a.readable))[1:40], ', ')
                     || CASE WHEN count(*) FILTER (WHERE a.readable) > 40
                        THEN format(', … (%s more: describe_table lists them)', count(*) FILTER (WHERE a.readable) - 40) ELSE '' END AS readable,
                   array_to_string((array_agg(quote_ident(a.attname) ORDER BY a.attnum) FILTER (WHERE NOT a.readable))[1:40], ', ')
                     || CASE WHEN count(*) FILTER (WHERE NOT a.readable) > 40
                        THEN format(' … (%s more)', count(*) FILTER (WHERE NOT a.readable) - 40) ELSE '' END AS withheld
              FROM (SELECT a.attname, a.attnum, has_column_privilege(c.oid, a.attnum, 'SELECT') AS readable
                      FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) a) w
  WHERE c.relname = $1 AND c.relkind IN ('r','p','v','m','f') AND has_schema_privilege(n.oid, 'USAGE')
    AND w.readable <> '' AND w.withheld <> ''";

static SCHEMA_IS_READABLE_SQL: Lazy<String> =
    Lazy::new(|| format!("SELECT 'yes' FROM pg_namespace n WHERE n.nspname = $2 AND {READABLE}"));

static READABLE_SCHEMA_NAMES_SQL: Lazy<String> = Lazy::new(|| {
    format!("SELECT coalesce(string_agg(n.nspname, ', ' ORDER BY n.nspname), '(none)') FROM pg_namespace n WHERE {READABLE}")
});

// ── explain ──

/// Size and indexes of the relations a plan scans sequentially: $1 schemas, $2 names.
const RELATION_SIZES_SQL: &str = "SELECT r.schema, r.name, CASE WHEN c.reltuples >= 0 THEN c.reltuples::float8 END,
    (pg_relation_size(c.oid) / current_setting('block_size')::int)::int8,
    ARRAY(SELECT i.relname || ' ' || regexp_replace(pg_get_indexdef(x.indexrelid), '^.*? USING ', '')
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid ORDER BY i.relname)
  FROM unnest($1::text[], $2::text[]) r(schema, name)
  JOIN pg_namespace n ON n.nspname = r.schema JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = r.name";

// ── profile_columns ──

/// The relation to profile: $2 schema, $3 table → (oid, quoted name, kind, estimated rows, last
/// analysed (UTC), statistics hidden by row security, pages, rows for n_distinct ratios, whether
/// the role may read any column).
static PROFILE_RELATION_SQL: Lazy<String> = Lazy::new(|| {
    format!(
        "SELECT c.oid, format('%I.%I', n.nspname, c.relname), {RELATION_KIND}, {ESTIMATED_ROWS},
           to_char(greatest(pg_stat_get_last_analyze_time(c.oid), pg_stat_get_last_autoanalyze_time(c.oid)) AT TIME ZONE 'UTC',
                   'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
           c.relrowsecurity AND row_security_active(c.oid),
           (CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(pg_relation_size(t.relid)), 0) FROM pg_partition_tree(c.oid) t WHERE t.isleaf)
                 WHEN c.relkind IN ('r','m') THEN pg_relation_size(c.oid) ELSE 0 END / current_setting('block_size')::int)::int8,
           (CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(greatest(ch.reltuples, 0)), 0) FROM pg_partition_tree(c.oid) t
                                             JOIN pg_class ch ON ch.oid = t.relid WHERE t.isleaf)
                 ELSE greatest(c.reltuples, 0) END)::float8,
           has_any_column_privilege(c.oid, 'SELECT')
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $2 AND c.relname = $3 AND c.relkind IN ('r','p','v','m','f') AND {READABLE}"
    )
});

/// Names in $2 that are not columns of relation $1.
const MISSING_COLUMNS_SQL: &str = "SELECT coalesce(array_agg(w.name ORDER BY w.ord), '{}')
  FROM unnest($2::text[]) WITH ORDINALITY w(name, ord)
 WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = $1 AND a.attname = w.name AND a.attnum > 0 AND NOT a.attisdropped)";

/// Whether type row `t` has a default btree operator class (directly, through its domain's
/// base type, a polymorphic class, or a binary-coercible cast, as PostgreSQL looks it up), so
/// ORDER BY, least/greatest and DISTINCT work on it.
const ORDERABLE_TYPE: &str = "EXISTS (SELECT 1 FROM pg_type bt, pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
   WHERE bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
     AND am.amname = 'btree' AND oc.opcdefault
     AND (oc.opcintype = bt.oid
          OR (oc.opcintype = 'anyenum'::regtype AND bt.typtype = 'e')
          OR (oc.opcintype = 'anyrange'::regtype AND bt.typtype = 'r')
          OR (oc.opcintype = 'anymultirange'::regtype AND bt.typtype = 'm')
          OR EXISTS (SELECT 1 FROM pg_cast k WHERE k.castsource = bt.oid AND k.casttarget = oc.opcintype AND k.castmethod = 'b')))";

/// Whether min() (and with it max()) takes type row `t`, as PostgreSQL resolves the call: the
/// type itself, its domain's base type, anyenum, or a binary-coercible cast.
const HAS_MIN_MAX: &str = "EXISTS (SELECT 1 FROM pg_type bt, pg_proc m
   WHERE bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
     AND m.proname = 'min' AND m.prokind = 'a' AND m.pronargs = 1 AND m.pronamespace = 'pg_catalog'::regnamespace
     AND (m.proargtypes[0] = bt.oid OR (m.proargtypes[0] = 'anyenum'::regtype AND bt.typtype = 'e')
          OR EXISTS (SELECT 1 FROM pg_cast k WHERE k.castsource = bt.oid AND k.casttarget = m.proargtypes[0] AND k.castmethod = 'b')))";

/// A page of columns to profile: $1 schema, $2 table, $3 oid, $4 wanted names (NULL: all),
/// $5 after (column number), $6 rows, $7 the table's rows (for n_distinct ratios) → (attnum,
/// name, type, type as a cast target, readable, orderable, array, pg_stats profile as JSON,
/// has values for min/max, min()/max() exist, the type's schema and name).
static PROFILE_COLUMNS_SQL: Lazy<String> = Lazy::new(|| {
    let quantile = |p: u32| {
        format!("hb.h -> (round({p} / 100.0 * (json_array_length(hb.h) - 1)))::int AS p{p}")
    };
    format!(
        "SELECT a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod), format_type(a.atttypid, NULL),
                has_column_privilege(a.attrelid, a.attnum, 'SELECT'), {ORDERABLE_TYPE}, t.typcategory = 'A',
                CASE WHEN st.attname IS NOT NULL AND has_column_privilege(a.attrelid, a.attnum, 'SELECT') THEN row_to_json(p)::text END,
                st.histogram_bounds IS NOT NULL OR st.most_common_vals IS NOT NULL, {HAS_MIN_MAX},
                (SELECT tn.nspname::text FROM pg_namespace tn WHERE tn.oid = t.typnamespace), t.typname::text
           FROM (SELECT * FROM pg_attribute a
                  WHERE a.attrelid = $3 AND a.attnum > 0 AND NOT a.attisdropped
                    AND ($4::text[] IS NULL OR a.attname = ANY($4::text[])) AND ($5::int IS NULL OR a.attnum > $5)
                  ORDER BY a.attnum LIMIT $6) a
           JOIN pg_type t ON t.oid = a.atttypid
           LEFT JOIN LATERAL (SELECT s.* FROM pg_stats s WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = a.attname
                               ORDER BY s.inherited DESC LIMIT 1) st ON true
          CROSS JOIN LATERAL (SELECT array_to_json(st.histogram_bounds) AS h) hb
          CROSS JOIN LATERAL (SELECT
                round(st.null_frac::numeric, 4) AS null_fraction,
                CASE WHEN st.n_distinct >= 0 THEN st.n_distinct::bigint ELSE round(-st.n_distinct * $7::float8)::bigint END AS estimated_distinct,
                (SELECT array_to_json(array_agg(row_to_json(m))) FROM (
                   SELECT v.value, round(f.freq::numeric, 4) AS frequency
                     FROM json_array_elements(array_to_json(st.most_common_vals)) WITH ORDINALITY v(value, ord)
                     JOIN unnest(st.most_common_freqs) WITH ORDINALITY f(freq, ord) USING (ord)
                    ORDER BY ord LIMIT {TOP_VALUES}) m) AS most_common,
                (SELECT row_to_json(q) FROM (SELECT {p10}, {p25}, {p50}, {p75}, {p90}) q WHERE hb.h IS NOT NULL) AS quantiles,
                st.avg_width AS average_width, round(st.correlation::numeric, 4) AS correlation) p
          ORDER BY a.attnum",
        p10 = quantile(10),
        p25 = quantile(25),
        p50 = quantile(50),
        p75 = quantile(75),
        p90 = quantile(90),
    )
});

/// The CTE the min/max statement of profile_columns builds on: $1 schema, $2 table, $3 oid, $4
/// the columns (numbers) wanted. pg_stats is read column by column (an index lookup each),
/// never for the whole of a 1,600-column table. Inherited statistics come first: for a
/// partitioned or parent table they describe what a query of it reads.
const STATS_VALUES_CTE: &str = "WITH st AS (SELECT a.attnum, s.histogram_bounds, s.most_common_vals
    FROM pg_attribute a CROSS JOIN LATERAL (SELECT s.histogram_bounds, s.most_common_vals FROM pg_stats s
      WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = a.attname ORDER BY s.inherited DESC LIMIT 1) s
   WHERE a.attrelid = $3 AND a.attnum = ANY($4::int2[]))";

// ── find_join_path ──

/// A relation named by `from`/`to`: $2 schema (NULL: any readable schema), $3 table →
/// (oid, quoted qualified name, kind, whether the role may read any of its columns).
static JOIN_RELATION_SQL: Lazy<String> = Lazy::new(|| {
    format!(
        "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), {RELATION_KIND},
                has_any_column_privilege(c.oid, 'SELECT')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relname = $3 AND ($2::text IS NULL OR n.nspname = $2::text::name)
            AND c.relkind IN ('r','p','v','m','f') AND {READABLE}
          ORDER BY n.nspname LIMIT 10"
    )
});

/// The foreign-key graph among the tables of readable schemas: (constraint, referencing
/// table, referenced table, whether the role may read every key column on both sides — the
/// only keys a path may use, as the ON clause names them). The constraints PostgreSQL clones
/// onto partitions are left out: the partitioned table's own constraint stands for them.
static FK_EDGES_SQL: Lazy<String> = Lazy::new(|| {
    format!(
        "SELECT con.oid, con.conrelid, con.confrelid,
                NOT EXISTS (SELECT 1 FROM unnest(con.conkey) k(attnum) WHERE NOT has_column_privilege(con.conrelid, k.attnum, 'SELECT'))
                AND NOT EXISTS (SELECT 1 FROM unnest(con.confkey) k(attnum) WHERE NOT has_column_privilege(con.confrelid, k.attnum, 'SELECT'))
           FROM pg_constraint con
           JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_class fc ON fc.oid = con.confrelid JOIN pg_namespace fn ON fn.oid = fc.relnamespace
          WHERE con.contype = 'f' AND con.conparentid = 0 AND {READABLE} AND {readable_fn}",
        readable_fn = readable_schema_sql("fn"),
    )
});

/// Foreign keys $1 in detail: (oid, name, referencing and referenced table quoted, their
/// names quoted (aliases), column names quoted in key order, whether the referencing columns
/// are unique (a one-to-one key)).
const FK_DETAILS_SQL: &str = "SELECT con.oid, con.conname::text,
    quote_ident(n.nspname) || '.' || quote_ident(c.relname), quote_ident(fn.nspname) || '.' || quote_ident(fc.relname),
    quote_ident(c.relname), quote_ident(fc.relname),
    ARRAY(SELECT quote_ident(a.attname) FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
    ARRAY(SELECT quote_ident(a.attname) FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord),
    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = con.conrelid AND i.indisunique AND i.indpred IS NULL
              AND i.indexprs IS NULL AND (i.indkey::int2[])[0:i.indnkeyatts - 1] @> con.conkey
              AND (i.indkey::int2[])[0:i.indnkeyatts - 1] <@ con.conkey)
  FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class fc ON fc.oid = con.confrelid JOIN pg_namespace fn ON fn.oid = fc.relnamespace
 WHERE con.oid = ANY($1::oid[])";

// ── search_objects ──

/// $2 schema (NULL: all readable), $3 kinds (NULL: all), $4 exact names (lower case), $5 prefix
/// pattern, $6 word patterns, $7 offset, $8 rows, $9 comment cap → (position, hit, total).
/// Each kind of object is ranked where it is read, in one pass over its catalog (columns: over
/// pg_attribute, joined to their tables only when they match, never probed table by table);
/// objects matching only some of the words come last, those matching more of them first.
/// What a hit shows beyond its names (qualified name, type, estimated rows) is worked out for
/// the page alone, after the ranking. Columns the role may not read are no hits (and not
/// counted): on the first page, a row ahead of the hits names the first of them (4th column).
static SEARCH_OBJECTS_SQL: Lazy<String> = Lazy::new(|| {
    let rank = |name: &str, comment: &str| {
        format!(
            "CROSS JOIN LATERAL (SELECT CASE WHEN lower({name}) = ANY($4::text[]) THEN 0
                 WHEN lower({name}) LIKE $5 THEN 1 WHEN lower({name}) LIKE ALL ($6::text[]) THEN 2
                 WHEN {comment} ILIKE ALL ($6::text[]) THEN 3
                 WHEN cardinality($6::text[]) > 1 AND (lower({name}) LIKE ANY ($6::text[]) OR {comment} ILIKE ANY ($6::text[])) THEN 4
                 END AS rank) k
             CROSS JOIN LATERAL (SELECT CASE WHEN k.rank = 4 THEN (SELECT count(*) FROM unnest($6::text[]) w
                 WHERE lower({name}) LIKE w OR {comment} ILIKE w) END AS words) kw"
        )
    };
    let wants = |kind: &str| format!("($3::text[] IS NULL OR {kind} = ANY($3::text[]))");
    format!(
        "WITH n AS (SELECT n.oid, n.nspname FROM pg_namespace n WHERE {READABLE} AND ($2::text IS NULL OR n.nspname = $2::text::name)),
         rel AS MATERIALIZED (SELECT c.oid, c.relname, c.relkind, n.nspname FROM n JOIN pg_class c ON c.relnamespace = n.oid
                               WHERE c.relkind IN ('r','p','v','m','f') AND NOT c.relispartition),
         hits AS (
           SELECT 'schema'::text AS kind, 0 AS kind_order, n.nspname::text AS schema, NULL::text AS table_name,
                  n.nspname::text AS name, NULL::oid AS object, NULL::oid AS type_oid, NULL::int AS type_mod,
                  d.description AS comment, k.rank, kw.words, true AS readable
             FROM n {schema_comment} {schema_rank}
            WHERE k.rank IS NOT NULL AND {wants_schema}
           UNION ALL
           SELECT {RELATION_KIND}, 1, c.nspname::text, NULL, c.relname::text, c.oid, NULL, NULL, d.description, k.rank, kw.words, true
             FROM rel c {relation_comment} {relation_rank}
            WHERE k.rank IS NOT NULL AND {wants_relation}
           UNION ALL
           SELECT 'function', 2, n.nspname::text, NULL, p.proname::text, p.oid, NULL, NULL, d.description, k.rank, kw.words, true
             FROM n JOIN pg_proc p ON p.pronamespace = n.oid {function_comment} {function_rank}
            WHERE k.rank IS NOT NULL AND {NOT_EXTENSION_MEMBER} AND {wants_function}
           UNION ALL
           SELECT 'column', 3, c.nspname::text, c.relname::text, m.attname::text, c.oid, m.atttypid, m.atttypmod,
                  m.description, m.rank, m.words, has_column_privilege(m.attrelid, m.attnum, 'SELECT')
             FROM (SELECT a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod, d.description, k.rank, kw.words
                     FROM pg_attribute a {column_comment} {column_rank}
                    WHERE a.attnum > 0 AND NOT a.attisdropped AND k.rank IS NOT NULL AND {wants_column}
                   OFFSET 0) m
             JOIN rel c ON c.oid = m.attrelid),
         page AS (
           SELECT h.*, row_number() OVER w AS position, count(*) OVER () AS total FROM hits h WHERE h.readable
           WINDOW w AS (ORDER BY h.rank, h.words DESC, h.kind_order, h.schema, h.table_name NULLS FIRST, h.name, h.object)
           ORDER BY position OFFSET $7 LIMIT $8),
         withheld AS (
           SELECT json_agg(w.q ORDER BY w.q COLLATE \"C\")::text AS names FROM (
             SELECT x.q FROM (SELECT quote_ident(h.schema) || '.' || quote_ident(h.table_name) || '.' || quote_ident(h.name) AS q
                                FROM hits h WHERE NOT h.readable) x
              ORDER BY x.q COLLATE \"C\" LIMIT {SEARCH_WITHHELD_NAMES}) w)
         SELECT u.key, u.hit, u.total, u.withheld FROM (
           SELECT 0::int8 AS ord, NULL::text AS key, NULL::text AS hit, NULL::int8 AS total, w.names AS withheld
             FROM withheld w WHERE w.names IS NOT NULL AND $7 = 0
           UNION ALL
           SELECT p.position, p.position::text, row_to_json(x)::text, p.total, NULL
           FROM page p LEFT JOIN pg_class c ON c.oid = p.object AND p.kind <> 'function'
          CROSS JOIN LATERAL (SELECT p.kind, p.schema, p.table_name AS table, p.name,
                CASE p.kind WHEN 'schema' THEN quote_ident(p.schema)
                     WHEN 'column' THEN quote_ident(p.schema) || '.' || quote_ident(p.table_name) || '.' || quote_ident(p.name)
                     WHEN 'function' THEN format('%I.%I(%s)', p.schema, p.name,
                          (SELECT string_agg(format_type(t.oid, NULL), ', ' ORDER BY t.ord)
                             FROM pg_proc f CROSS JOIN LATERAL unnest(f.proargtypes::oid[]) WITH ORDINALITY t(oid, ord)
                            WHERE f.oid = p.object))
                     ELSE quote_ident(p.schema) || '.' || quote_ident(p.name) END AS qualified_name,
                CASE p.kind WHEN 'column' THEN format_type(p.type_oid, p.type_mod)
                     WHEN 'function' THEN pg_get_function_result(p.object) END AS type,
                {comment} AS comment,
                CASE WHEN p.kind NOT IN ('schema', 'function') THEN {ESTIMATED_ROWS} END AS estimated_rows,
                (ARRAY['exact', 'prefix', 'substring', 'comment', 'some words'])[p.rank + 1] AS match) x) u
          ORDER BY u.ord",
        schema_comment = comment_join("d", "pg_namespace", "n.oid", "0"),
        schema_rank = rank("n.nspname", "d.description"),
        wants_schema = wants("'schema'"),
        relation_comment = comment_join("d", "pg_class", "c.oid", "0"),
        relation_rank = rank("c.relname", "d.description"),
        wants_relation = wants(&format!("(CASE c.relkind WHEN 'p' THEN 'table' ELSE {RELATION_KIND} END)")),
        function_comment = comment_join("d", "pg_proc", "p.oid", "0"),
        function_rank = rank("p.proname", "d.description"),
        wants_function = wants("'function'"),
        column_comment = comment_join("d", "pg_class", "a.attrelid", "a.attnum"),
        column_rank = rank("a.attname", "d.description"),
        wants_column = wants("'column'"),
        comment = capped_comment("p.comment", "$9"),
    )
});

// ════════════════════════════════════════════════════════════════════════════════════════════
// SQL guard
// Contract: gives a clean early "no" to anything that is not one read, and closes what a
// read-only transaction alone would not (session advisory locks, file and network access,
// dynamic SQL, sleeps). It is not the boundary — the role and the read-only, rolled-back
// transaction are — so it is precise rather than paranoid: a real lexer (literals, dollar
// quotes, quoted and U& identifiers, nested comments) means words inside literals, comments
// and quoted names never count. Returns the statement without its trailing `;`.
// ════════════════════════════════════════════════════════════════════════════════════════════

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An unquoted identifier or keyword, lower-cased.
    Word(String),
    /// A "quoted" or U&"quoted" identifier, decoded, case kept.
    Quoted(String),
    /// A string literal of any form, or a dollar-quoted body (content not kept).
    Literal,
    Number(String),
    Param,
    LParen,
    RParen,
    Semicolon,
    Comma,
    Dot,
    /// Any operator or other punctuation.
    Op(String),
}

/// Splits SQL into tokens the way PostgreSQL's scanner does for everything that matters here:
/// the tokens, and the byte offset in `sql` where each one starts.
fn lex(sql: &str) -> Result<(Vec<Tok>, Vec<usize>), String> {
    let chars: Vec<char> = sql.chars().collect();
    let byte_offsets: Vec<usize> = sql.char_indices().map(|(offset, _)| offset).collect();
    let mut tokens = Vec::new();
    let mut starts = Vec::new();
    let mut token_start = 0;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        // Each pass pushes at most one token; record where the previous pass's token began.
        if tokens.len() > starts.len() {
            starts.push(byte_offsets[token_start]);
        }
        token_start = i;
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && at(i + 1) == '-' {
            // PostgreSQL ends a -- comment at \n or \r.
            while i < chars.len() && chars[i] != '\n' && chars[i] != '\r' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0usize;
            loop {
                if i >= chars.len() {
                    return Err("unterminated /* comment".into());
                }
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '\'' {
            i = skip_quoted(&chars, i + 1, '\'', false)?;
            tokens.push(Tok::Literal);
        } else if (c == 'e' || c == 'E') && at(i + 1) == '\'' {
            i = skip_quoted(&chars, i + 2, '\'', true)?;
            tokens.push(Tok::Literal);
        } else if matches!(c, 'b' | 'B' | 'x' | 'X' | 'n' | 'N') && at(i + 1) == '\'' {
            i = skip_quoted(&chars, i + 2, '\'', false)?;
            tokens.push(Tok::Literal);
        } else if (c == 'u' || c == 'U')
            && at(i + 1) == '&'
            && (at(i + 2) == '\'' || at(i + 2) == '"')
        {
            let quote = at(i + 2);
            let end = skip_quoted(&chars, i + 3, quote, false)?;
            let raw: String = chars[i + 3..end - 1]
                .iter()
                .collect::<String>()
                .replace(&format!("{quote}{quote}"), &quote.to_string());
            i = end;
            let escape = parse_uescape(&chars, &mut i)?;
            if quote == '"' {
                tokens.push(Tok::Quoted(decode_unicode_escapes(&raw, escape)?));
            } else {
                tokens.push(Tok::Literal);
            }
        } else if c == '"' {
            let end = skip_quoted(&chars, i + 1, '"', false)?;
            let name: String = chars[i + 1..end - 1]
                .iter()
                .collect::<String>()
                .replace("\"\"", "\"");
            if name.is_empty() {
                return Err("zero-length quoted identifier".into());
            }
            tokens.push(Tok::Quoted(name));
            i = end;
        } else if c == '$' && at(i + 1).is_ascii_digit() {
            i += 1;
            while at(i).is_ascii_digit() {
                i += 1;
            }
            tokens.push(Tok::Param);
        } else if c == '$' && (at(i + 1) == '$' || is_ident_start(at(i + 1))) {
            let mut j = i + 1;
            while j < chars.len() && is_ident_char(chars[j]) && chars[j] != '$' {
                j += 1;
            }
            if at(j) != '$' {
                tokens.push(Tok::Op("$".into()));
                i += 1;
                continue;
            }
            let tag: String = chars[i..=j].iter().collect();
            let body_start = j + 1;
            let tag_chars: Vec<char> = tag.chars().collect();
            let mut k = body_start;
            loop {
                if k + tag_chars.len() > chars.len() {
                    return Err(format!("unterminated dollar-quoted string {tag}"));
                }
                if chars[k..k + tag_chars.len()] == tag_chars[..] {
                    break;
                }
                k += 1;
            }
            i = k + tag_chars.len();
            tokens.push(Tok::Literal);
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            tokens.push(Tok::Word(
                chars[start..i].iter().collect::<String>().to_lowercase(),
            ));
        } else if c.is_ascii_digit() || (c == '.' && at(i + 1).is_ascii_digit()) {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
            {
                if (chars[i] == 'e' || chars[i] == 'E') && matches!(at(i + 1), '+' | '-') {
                    i += 1;
                }
                i += 1;
            }
            tokens.push(Tok::Number(chars[start..i].iter().collect()));
        } else {
            i += 1;
            tokens.push(match c {
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                ';' => Tok::Semicolon,
                ',' => Tok::Comma,
                '.' => Tok::Dot,
                _ => {
                    let mut op = c.to_string();
                    while i < chars.len()
                        && "+-*/<>=~!@#%^&|`?:".contains(chars[i])
                        && !(chars[i] == '-' && at(i + 1) == '-')
                        && !(chars[i] == '/' && at(i + 1) == '*')
                    {
                        op.push(chars[i]);
                        i += 1;
                    }
                    Tok::Op(op)
                }
            });
        }
    }
    if tokens.len() > starts.len() {
        starts.push(byte_offsets[token_start]);
    }
    Ok((tokens, starts))
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || (c as u32) >= 0x80
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || (c as u32) >= 0x80
}

/// Skips to just past the closing `quote` (a doubled quote is an escaped one); with
/// `backslashes`, a backslash escapes the next character (E'…' strings).
fn skip_quoted(
    chars: &[char],
    mut i: usize,
    quote: char,
    backslashes: bool,
) -> Result<usize, String> {
    loop {
        match chars.get(i) {
            None => {
                return Err(if quote == '"' {
                    "unterminated quoted identifier".into()
                } else {
                    "unterminated string literal".into()
                })
            }
            Some('\\') if backslashes => i += 2,
            Some(&c) if c == quote => {
                if chars.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return Ok(i + 1);
                }
            }
            Some(_) => i += 1,
        }
    }
}

/// Reads an optional `UESCAPE 'c'` after a U& literal; returns the escape character.
fn parse_uescape(chars: &[char], i: &mut usize) -> Result<char, String> {
    let mut j = *i;
    while chars.get(j).is_some_and(|c| c.is_whitespace()) {
        j += 1;
    }
    let word: String = chars.iter().skip(j).take(7).collect();
    if !word.eq_ignore_ascii_case("uescape") {
        return Ok('\\');
    }
    j += 7;
    while chars.get(j).is_some_and(|c| c.is_whitespace()) {
        j += 1;
    }
    match (chars.get(j), chars.get(j + 1), chars.get(j + 2)) {
        (Some('\''), Some(&escape), Some('\''))
            if !escape.is_ascii_hexdigit() && !"+'\" ".contains(escape) =>
        {
            *i = j + 3;
            Ok(escape)
        }
        _ => Err("invalid UESCAPE clause".into()),
    }
}

/// Decodes `\XXXX` and `\+XXXXXX` escapes of a U&"…" identifier, so a name spelled in escapes is
/// checked as the name PostgreSQL will see.
fn decode_unicode_escapes(raw: &str, escape: char) -> Result<String, String> {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != escape {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&escape) {
            out.push(escape);
            i += 2;
            continue;
        }
        let (digits, skip) = if chars.get(i + 1) == Some(&'+') {
            (6, 2)
        } else {
            (4, 1)
        };
        let hex: String = chars.iter().skip(i + skip).take(digits).collect();
        let code = u32::from_str_radix(&hex, 16)
            .ok()
            .filter(|_| hex.len() == digits)
            .and_then(char::from_u32);
        out.push(code.ok_or("invalid Unicode escape in U& identifier")?);
        i += skip + digits;
    }
    Ok(out)
}

/// Knobs of the guard that come from configuration.
#[derive(Debug, Clone, Copy)]
struct GuardPolicy {
    /// pg_sleep(n) is allowed only while n stays below the statement timeout.
    statement_timeout_ms: u64,
    /// repeat()/lpad()/rpad() may not build a value larger than the result budget.
    max_result_bytes: u64,
}

/// Functions refused by name, with the reason the analyst sees. Each entry is a regular
/// expression over the lower-cased function name (anchored at both ends) and, for extension
/// schemas, the schema the call must be qualified with. Each acts outside the transaction or
/// outside the database, leaves state in the pooled session, or runs SQL the guard cannot see.
///
/// The table comes from an audit, not from examples: every function of PostgreSQL 15 and of the
/// extensions Debian ships for it (contrib, PostGIS, hypopg, pg_partman, pg_repack, pg_cron) that
/// is marked as having side effects (VOLATILE or PARALLEL UNSAFE), takes SQL-like text, or runs
/// its own arguments as SQL is either here or on the reviewed allow-list in
/// tests/guard_audit_allowed.tsv, and tests/test_guard_audit.py checks that against the real
/// catalogs (TimescaleDB, not packaged by Debian, against tests/guard_audit_timescaledb.tsv).
/// See the README's security model for the method and the reasons allowed functions are safe.
#[rustfmt::skip]
static DANGEROUS_FUNCTIONS: &[(Option<&str>, &str, &str)] = &[
    // State that outlives the request on the pooled connection.
    (None, "pg_(try_)?advisory_lock(_shared)?", "session advisory locks survive ROLLBACK and would leak into the pool"),
    (None, "set_config", "set_config changes the settings the server fixes for every request (statement_timeout, search_path, role)"),
    (None, "setseed", "seeds random() for the rest of the session"),
    (None, "hypopg_(create_index|drop_index|reset|reset_index|hide_index|unhide_index|unhide_all_indexes)", "hypopg: hypothetical indexes live in the database session across requests and change later plans on the pooled connection"),
    (None, "pg_export_snapshot", "exports a snapshot for other sessions to import"),
    (None, "pg_sleep_(for|until)", "sleeping holds a database connection; use pg_sleep(seconds) below the timeout"),
    // Outside the database: other databases, server files.
    (None, "dblink.*", "dblink opens connections to other databases"),
    (None, "lo_.*|loread|lowrite", "large-object functions read and write server files and storage"),
    (None, "pg_read_(binary_)?file(_old)?", "reads files on the database server"),
    (None, "pg_ls_.*|pg_stat_file|pg_logdir_ls", "inspects files and directories on the database server"),
    (None, "pg_file_.*", "writes files on the database server (adminpack)"),
    // Other sessions and the server process.
    (None, "pg_(terminate|cancel)_backend", "acts on other sessions"),
    (None, "pg_reload_conf|pg_rotate_logfile(_old)?|pg_log_backend_memory_contexts", "acts on the server process"),
    (None, "pg_notify", "sends notifications to other sessions"),
    (None, "pg_stat_reset.*|pg_stat_statements_reset", "resets statistics for every session"),
    (None, "pg_prewarm|autoprewarm_(start_worker|dump_now)", "pg_prewarm: fills shared buffers (evicting other sessions' data) or starts a background worker"),
    (None, "bt_index_parent_check", "amcheck: locks the table against writes while it runs; use bt_index_check"),
    // WAL, backups, replication, recovery.
    (None, "pg_backup_.*|pg_(start|stop)_backup|pg_switch_wal|pg_create_restore_point|pg_promote|pg_wal_replay_(pause|resume)", "controls backups, WAL and recovery"),
    (None, "pg_(create|drop|copy)_.*replication_slot|pg_replication_slot_advance|pg_logical_slot_(get|peek)_(binary_)?changes|pg_replication_origin_.*|pg_logical_emit_message", "changes replication state or writes WAL"),
    // Writes that READ ONLY does not stop or ROLLBACK does not undo.
    (None, "txid_.*|pg_current_xact_id(_if_assigned)?|gettransactionid", "assigns a transaction id"),
    (None, "nextval|setval", "changes a sequence, which ROLLBACK does not undo"),
    (None, "brin_summarize_(new_values|range)|brin_desummarize_range|gin_clean_pending_list", "writes index pages, which ROLLBACK does not undo"),
    (None, "heap_force_(kill|freeze)", "pg_surgery: rewrites table pages"),
    (None, "pg_truncate_visibility_map", "pg_visibility: rewrites the visibility map"),
    (None, "pg_import_system_collations|pg_nextoid|pg_stop_making_pinned_objects|binary_upgrade_.*|pg_extension_config_dump", "changes the system catalogs (for superusers and extension scripts)"),
    // SQL run from text the guard cannot inspect.
    (None, "(query|cursor|table|schema|database)_to_xml(schema|_and_xmlschema)?", "runs SQL from text or dumps whole objects; use query"),
    (None, "ts_stat|ts_rewrite", "runs SQL from text the guard cannot inspect"),
    (None, "crosstab[234]?|connectby", "tablefunc: runs SQL from text the guard cannot inspect; write the pivot with GROUP BY and FILTER"),
    (None, "xpath_table", "xml2: runs SQL built from its text arguments"),
    (None, "_?st_mapalgebra(expr)?|_add_raster_constraint", "PostGIS raster: evaluates SQL given as text"),
    (None, "_?st_value(count|percent)", "PostGIS raster: splices a table name given as text into SQL; use ST_Value or ST_DumpValues"),
    (None, "loader_load_staged_data", "PostGIS tiger geocoder: loads data with SQL built from its text arguments"),
    // Extensions' maintenance: jobs, partitions, chunks, table rewrites.
    (Some("cron"), ".*", "pg_cron schedules jobs that run outside this transaction"),
    (Some("repack"), ".*", "pg_repack's functions rewrite tables for the pg_repack client"),
    (Some("_timescaledb_functions"), ".*", "TimescaleDB's internal functions change chunks, jobs and catalogs"),
    (Some("_timescaledb_internal"), ".*", "TimescaleDB's internal functions change chunks, jobs and catalogs"),
    (None, "drop_chunks|(de|re)?compress_chunk|move_chunk|copy_chunk|cleanup_copy_chunk_operation|reorder_chunk|merge_chunks(_concurrently)?|split_chunk|(attach|detach)_chunk|convert_to_(columnstore|rowstore)|refresh_continuous_aggregate|cagg_migrate", "TimescaleDB: rewrites, moves or deletes data"),
    (None, "(add|remove)_[a-z_]*polic(y|ies)|alter_policies|add_job|alter_job|delete_job|run_job", "TimescaleDB: schedules or changes background jobs"),
    (None, "add_dimension|create_hypertable|create_distributed_hypertable|set_(chunk_time_interval|integer_now_func|number_partitions|partitioning_interval|adaptive_chunking|replication_factor)|(enable|disable)_chunk_skipping|(attach|detach)_tablespaces?|timescaledb_(pre|post)_restore|(add|delete|attach|detach|alter)_data_node|distributed_exec|create_distributed_restore_point", "TimescaleDB: changes hypertables, tablespaces or data nodes"),
    (None, "run_maintenance(_proc)?|create_(parent|sub_parent)|partition_data_(time|id|proc)|undo_partition(_proc)?|drop_partition_(time|id|column)|create_partition_(time|id)|partition_gap_fill|reapply_(constraints_proc|privileges)|apply_(cluster|constraints|foreign_keys|privileges|publications)|autovacuum_(off|reset)|stop_sub_partition|inherit_template_properties|create_function_(id|time)|drop_constraints|run_analyze|create_trigger", "pg_partman: creates, fills or drops partitions (and logs through pg_jobmon outside the transaction)"),
    (None, "addgeometrycolumn|dropgeometry(column|table)|updategeometrysrid|populate_geometry_columns|_?updaterastersrid|(add|drop)(raster|overview)constraints|_(add|drop)_(raster|overview)_constraint_?.*", "PostGIS: alters tables"),
    (None, "addauth|checkauth|lockrow|unlockrows|(enable|disable)longtransactions", "PostGIS long transactions: writes lock tables and assigns a transaction id"),
];

/// The table above, compiled once into one RegexSet.
static DANGEROUS_NAMES: Lazy<regex::RegexSet> = Lazy::new(|| {
    let anchored = DANGEROUS_FUNCTIONS
        .iter()
        .map(|(_, pattern, _)| format!("^(?:{pattern})$"));
    regex::RegexSet::new(anchored)
        .unwrap_or_else(|e| panic!("DANGEROUS_FUNCTIONS has an invalid pattern: {e}"))
});

/// Functions that multiply a value's size by a count argument.
const SIZE_FUNCTIONS: [&str; 3] = ["repeat", "lpad", "rpad"];

/// Statement keywords that write or change state; they never appear as keywords in a read.
const WRITE_KEYWORDS: [&str; 4] = ["insert", "update", "delete", "merge"];

/// Checks one statement; Ok(statement without trailing `;`) or Err(reason for the analyst).
fn check_sql(sql: &str, policy: &GuardPolicy) -> Result<String, String> {
    if sql.contains('\0') {
        return Err("the SQL text contains a NUL character".into());
    }
    let (tokens, starts) = lex(sql)?;
    let end = tokens
        .iter()
        .position(|t| *t == Tok::Semicolon)
        .unwrap_or(tokens.len());
    let statement = sql[..starts.get(end).copied().unwrap_or(sql.len())]
        .trim_end()
        .to_string();
    drop(starts); // 8 bytes a token: freed before the rules below add their own per-token tables
    if tokens[end..].iter().any(|t| *t != Tok::Semicolon) {
        return Err(
            "only a single statement is allowed (found more than one; remove everything after the first ';')"
                .into(),
        );
    }
    let tokens = &tokens[..end];
    let pairs = paren_pairs(tokens)?;
    match tokens.iter().find(|t| **t != Tok::LParen) {
        None => return Err("empty query: send one SELECT/WITH statement".into()),
        Some(Tok::Word(w)) if is_read_keyword(w) => {}
        Some(Tok::Word(w)) if w == "explain" => {
            return Err(
                "only a single SELECT/WITH statement is allowed (this one starts with EXPLAIN: \
                 for a plan, call the explain tool with the statement itself)"
                    .into(),
            )
        }
        Some(Tok::Word(w)) => {
            return Err(format!(
                "only a single SELECT/WITH statement is allowed (this one starts with {})",
                w.to_uppercase()
            ))
        }
        Some(_) => return Err("only a single SELECT/WITH statement is allowed".into()),
    }
    for (i, token) in tokens.iter().enumerate() {
        let word_at = |k: usize| match tokens.get(k) {
            Some(Tok::Word(w)) => w.as_str(),
            _ => "",
        };
        if let Tok::Word(word) = token {
            if WRITE_KEYWORDS.contains(&word.as_str()) {
                return Err(format!(
                    "{} is not allowed: this server only reads",
                    word.to_uppercase()
                ));
            }
            if word == "into" {
                return Err("SELECT … INTO creates a table and is not allowed".into());
            }
            if word == "for" && matches!(word_at(i + 1), "share" | "no" | "key" | "update") {
                return Err(
                    "row locks (FOR UPDATE/SHARE/NO KEY UPDATE/KEY SHARE) are not allowed".into(),
                );
            }
            if word == "with" {
                check_cte_bodies(tokens, &pairs, i)?;
            }
        }
        let Some(name) = identifier(token) else {
            continue;
        };
        if tokens.get(i + 1) == Some(&Tok::LParen) {
            let schema = match (
                i.checked_sub(1).map(|k| &tokens[k]),
                i.checked_sub(2).map(|k| &tokens[k]),
            ) {
                (Some(Tok::Dot), Some(qualifier)) => identifier(qualifier),
                _ => None,
            };
            check_function_name(&name, schema.as_deref())?;
            let close = pairs[i + 1].unwrap_or(tokens.len());
            check_function_arguments(&name, &tokens[i + 2..close], policy)?;
        } else if i >= 2 && tokens[i - 1] == Tok::Dot && tokens[i - 2] == Tok::RParen {
            // `(value).function` is PostgreSQL's attribute notation for `function(value)`.
            check_function_name(&name, None)?;
            if name == "pg_sleep" || SIZE_FUNCTIONS.contains(&name.as_str()) {
                return Err(format!(
                    "{name}() must be called as {name}(…), not in attribute notation"
                ));
            }
        }
    }
    Ok(statement)
}

fn is_read_keyword(word: &str) -> bool {
    matches!(word, "select" | "with" | "values" | "table")
}

/// The name an identifier token carries (quoted names compared case-insensitively: refusing
/// "PG_SLEEP" too costs nothing).
fn identifier(token: &Tok) -> Option<String> {
    match token {
        Tok::Word(w) => Some(w.clone()),
        Tok::Quoted(q) => Some(q.to_lowercase()),
        _ => None,
    }
}

/// For each `(` the index of its `)` (and None elsewhere), found in one pass so the rules stay
/// linear however deeply calls nest.
fn paren_pairs(tokens: &[Tok]) -> Result<Vec<Option<usize>>, String> {
    let mut pairs = vec![None; tokens.len()];
    let mut open = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Tok::LParen => open.push(i),
            Tok::RParen => {
                let start = open
                    .pop()
                    .ok_or("unbalanced parentheses: ')' without '('")?;
                pairs[start] = Some(i);
            }
            _ => {}
        }
    }
    if open.is_empty() {
        Ok(pairs)
    } else {
        Err("unbalanced parentheses: '(' without ')'".into())
    }
}

/// At a WITH keyword: if it opens a CTE list (`name [(cols)] AS [NOT] MATERIALIZED (`), every
/// body must start as a read. `WITH TIME ZONE`, `WITH ORDINALITY` etc. do not match and pass.
fn check_cte_bodies(
    tokens: &[Tok],
    pairs: &[Option<usize>],
    with_index: usize,
) -> Result<(), String> {
    let is_word = |k: usize, w: &str| matches!(tokens.get(k), Some(Tok::Word(x)) if x == w);
    let mut i = with_index + 1;
    if is_word(i, "recursive") {
        i += 1;
    }
    loop {
        if tokens.get(i).and_then(identifier).is_none() {
            return Ok(());
        }
        i += 1;
        if tokens.get(i) == Some(&Tok::LParen) {
            i = pairs[i].unwrap_or(tokens.len()) + 1;
        }
        if !is_word(i, "as") {
            return Ok(());
        }
        i += 1;
        if is_word(i, "not") {
            i += 1;
        }
        if is_word(i, "materialized") {
            i += 1;
        }
        if tokens.get(i) != Some(&Tok::LParen) {
            return Ok(());
        }
        let close = pairs[i].unwrap_or(tokens.len());
        match tokens[i + 1..close].iter().find(|t| **t != Tok::LParen) {
            Some(Tok::Word(w)) if is_read_keyword(w) => {}
            _ => {
                return Err(
                    "every WITH query (CTE) must be a SELECT; data-modifying CTEs are not allowed"
                        .into(),
                )
            }
        }
        // SEARCH / CYCLE clauses may follow a recursive CTE before the comma.
        i = close + 1;
        while let Some(t) = tokens.get(i) {
            if *t == Tok::Comma
                || *t == Tok::LParen
                || matches!(t, Tok::Word(w) if is_read_keyword(w))
            {
                break;
            }
            i += 1;
        }
        if tokens.get(i) != Some(&Tok::Comma) {
            return Ok(());
        }
        i += 1;
    }
}

/// Refuses a call to a function of the dangerous-function table.
fn check_function_name(name: &str, schema: Option<&str>) -> Result<(), String> {
    for hit in DANGEROUS_NAMES.matches(name).iter() {
        let (required_schema, _, reason) = DANGEROUS_FUNCTIONS[hit];
        if required_schema.is_none() || required_schema == schema {
            return Err(format!("function {name}() is not allowed: {reason}"));
        }
    }
    Ok(())
}

/// pg_sleep must sleep less than the timeout, and repeat/lpad/rpad must not build a value larger
/// than the result budget: their count must be a literal within it, or a plain column.
fn check_function_arguments(
    name: &str,
    arguments: &[Tok],
    policy: &GuardPolicy,
) -> Result<(), String> {
    if name == "pg_sleep" {
        let seconds = match arguments {
            [Tok::Number(n)] => n.parse::<f64>().ok(),
            _ => None,
        };
        return match seconds {
            Some(s) if s * 1000.0 < policy.statement_timeout_ms as f64 => Ok(()),
            _ => Err(format!(
                "pg_sleep() is only allowed with a literal number of seconds below the statement timeout ({} ms)",
                policy.statement_timeout_ms
            )),
        };
    }
    if !SIZE_FUNCTIONS.contains(&name) {
        return Ok(());
    }
    let nested = arguments.windows(2).any(|pair| {
        matches!(pair, [Tok::Word(inner), Tok::LParen] if SIZE_FUNCTIONS.contains(&inner.as_str()))
    });
    if nested {
        return Err(format!(
            "nested {name}() calls multiply sizes into gigabytes and are not allowed"
        ));
    }
    let mut depth = 0usize;
    let mut top_level_commas = Vec::new();
    for (k, token) in arguments.iter().enumerate() {
        match token {
            Tok::LParen => depth += 1,
            Tok::RParen => depth = depth.saturating_sub(1),
            Tok::Comma if depth == 0 => top_level_commas.push(k),
            _ => {}
        }
    }
    let Some(&first_comma) = top_level_commas.first() else {
        return Ok(());
    };
    let count_end = top_level_commas.get(1).copied().unwrap_or(arguments.len());
    let count = &arguments[first_comma + 1..count_end];
    let is_column = !count.is_empty()
        && count.iter().enumerate().all(|(k, t)| {
            if k % 2 == 0 {
                identifier(t).is_some()
            } else {
                *t == Tok::Dot
            }
        });
    match count {
        [Tok::Number(n)]
            if n.parse::<f64>()
                .is_ok_and(|v| v <= policy.max_result_bytes as f64) =>
        {
            Ok(())
        }
        _ if is_column => Ok(()),
        _ => Err(format!(
            "{name}() may only use a literal count up to the result budget ({} bytes) or a column: \
             computed counts can build values of gigabytes",
            policy.max_result_bytes
        )),
    }
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// Database connection: libpq settings and passwords
// Contract: DATABASE_URL (URL or key=value form) means what it means to libpq, so a DSN that
// works with psql works here: sslmode disable/allow/prefer (the default)/require/verify-ca/
// verify-full, sslrootcert (a PEM file or `system`), sslcert + sslkey, sslnegotiation,
// channel_binding, sslsni, ssl_min/max_protocol_version, and libpq's PGSSL* variables where the
// DSN is silent. The `postgres` crate knows only disable/prefer/require, so `DbSettings` takes
// these settings out of the DSN, and `DbSettings::connect` runs libpq's attempts (allow: plain,
// then TLS; prefer: TLS, then plain), each handing the crate a plain mode plus the TLS section's
// connector. Passwords come from the DSN, MCP_DATABASE_PASSWORD_FILE or PGPASSFILE/~/.pgpass,
// are read at each connect (a rotated secret is picked up) and never appear in a log line, an
// error or /metrics. A failure is a `DbDown`: a stable reason code (for /readyz without a token)
// and a message for the operator that names the names (settings, CA, host names, dates).
// ════════════════════════════════════════════════════════════════════════════════════════════

/// libpq's sslmode, in increasing order of protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

#[derive(Clone, Debug)]
enum PasswordSource {
    /// In DATABASE_URL itself (or no password needed).
    Dsn,
    File(String),
    PgPass(std::path::PathBuf),
}

/// Everything needed to open a database connection, parsed once at start-up.
#[derive(Clone, Debug)]
struct DbSettings {
    /// The DSN without the settings handled here; its crate-level sslmode is set per attempt.
    base: postgres::Config,
    sslmode: SslMode,
    roots: Option<std::sync::Arc<TrustRoots>>,
    identity: Option<std::sync::Arc<ClientIdentity>>,
    direct: bool,
    sni: bool,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
    password: PasswordSource,
    /// Every host is a Unix socket: libpq never uses TLS there.
    unix_only: bool,
    /// Every host is loopback or a Unix socket: plaintext is then no cause for a warning.
    local_only: bool,
    /// Found while parsing, logged once by serve().
    warnings: Vec<String>,
}

/// Why the database cannot be used: a stable code (for /readyz without credentials) and the
/// operator's message.
#[derive(Debug, Clone)]
struct DbDown {
    reason: &'static str,
    message: String,
}

impl DbDown {
    fn new(reason: &'static str, message: impl Into<String>) -> DbDown {
        DbDown {
            reason,
            message: message.into(),
        }
    }
}

/// The libpq settings taken out of the DSN, with the environment variable libpq reads for each
/// when the DSN does not set it.
const LIBPQ_TLS_SETTINGS: &[(&str, &str)] = &[
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslnegotiation", "PGSSLNEGOTIATION"),
    ("channel_binding", "PGCHANNELBINDING"),
    ("sslsni", "PGSSLSNI"),
    ("ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION"),
    ("ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION"),
    ("sslcompression", "PGSSLCOMPRESSION"),
    ("gssencmode", "PGGSSENCMODE"),
];

/// libpq settings this server cannot honour: refused by name rather than silently ignored.
const LIBPQ_REFUSED_SETTINGS: &[(&str, &str)] = &[
    ("sslpassword", "encrypted client keys are not supported: decrypt the key (openssl pkey -in key.pem -out plain.pem) and protect it with chmod 600"),
    ("sslcrl", "certificate revocation lists are not supported"),
    ("sslcrldir", "certificate revocation lists are not supported"),
    ("sslcertmode", "sslcertmode is not supported: set sslcert/sslkey to send a client certificate"),
    ("requirepeer", "requirepeer is not supported"),
    ("krbsrvname", "GSSAPI/Kerberos is not supported"),
    ("gsslib", "GSSAPI/Kerberos is not supported"),
];

/// A DSN split into the part the crate parses and the settings handled here.
#[derive(Debug, Default, PartialEq)]
struct SplitDsn {
    rest: String,
    own: BTreeMap<String, String>,
}

/// Takes the TLS settings out of a URL or key=value DSN, keeping everything else as written.
fn split_dsn(dsn: &str) -> Result<SplitDsn, String> {
    let own_key = |key: &str| -> Result<bool, String> {
        if let Some((_, why)) = LIBPQ_REFUSED_SETTINGS.iter().find(|(k, _)| *k == key) {
            return Err(format!("{key}: {why}"));
        }
        Ok(LIBPQ_TLS_SETTINGS.iter().any(|(k, _)| *k == key))
    };
    let mut split = SplitDsn::default();
    if let Some(scheme_end) = ["postgresql://", "postgres://"]
        .iter()
        .find(|s| dsn.starts_with(**s))
        .map(|s| s.len())
    {
        // As the crate reads it: credentials run to the first '@', the query starts after them.
        let after_scheme = &dsn[scheme_end..];
        let query_from = after_scheme.find('@').unwrap_or(0);
        let Some(question) = after_scheme[query_from..].find('?') else {
            split.rest = dsn.to_string();
            return Ok(split);
        };
        let cut = scheme_end + query_from + question;
        let mut kept = Vec::new();
        for pair in dsn[cut + 1..].split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = dsn_percent_decode(key)?;
            if own_key(&key)? {
                split.own.insert(key, dsn_percent_decode(value)?);
            } else {
                kept.push(pair);
            }
        }
        split.rest = dsn[..cut].to_string();
        if !kept.is_empty() {
            split.rest.push('?');
            split.rest.push_str(&kept.join("&"));
        }
        return Ok(split);
    }
    let mut kept = Vec::new();
    for (key, value) in parse_keyword_dsn(dsn)? {
        if own_key(&key)? {
            split.own.insert(key, value);
        } else {
            kept.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    split.rest = kept.join(" ");
    Ok(split)
}

/// libpq's key=value grammar: `key = value`, values bare or single-quoted, `\` escaping.
fn parse_keyword_dsn(dsn: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "missing \"=\" after {key:?} in the connection string"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated quoted value of {key:?}")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// `%XX` escapes as the PostgreSQL URL parser reads them (`+` stays `+`, unlike in forms).
fn dsn_percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("invalid percent-encoding in {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("percent-encoding of {text:?} is not UTF-8"))
}

/// The libpq settings of one DSN: the DSN's own, else libpq's environment variable.
struct LibpqSettings<'a> {
    dsn: BTreeMap<String, String>,
    env: EnvLookup<'a>,
    home: Option<std::path::PathBuf>,
}

impl LibpqSettings<'_> {
    /// (value, where it came from) — the origin names the setting in every message.
    fn get(&self, key: &str) -> Option<(String, String)> {
        if let Some(value) = self.dsn.get(key) {
            return Some((value.clone(), format!("DATABASE_URL {key}")));
        }
        let (_, var) = LIBPQ_TLS_SETTINGS.iter().find(|(k, _)| *k == key)?;
        (self.env)(var).map(|value| (value, var.to_string()))
    }

    /// One of `choices` (the first is the default).
    fn choice(&self, key: &str, choices: &[&'static str]) -> Result<&'static str, String> {
        match self.get(key) {
            None => Ok(choices[0]),
            Some((value, from)) => choices
                .iter()
                .find(|c| **c == value)
                .copied()
                .ok_or_else(|| format!("{from}={value:?}: use {}", choices.join(", "))),
        }
    }

    /// libpq's default file under ~/.postgresql.
    fn default_file(&self, name: &str) -> Option<std::path::PathBuf> {
        self.home.as_ref().map(|h| h.join(".postgresql").join(name))
    }

    /// libpq: the default is prefer, or verify-full with sslrootcert=system, which allows no other.
    fn sslmode(&self) -> Result<SslMode, String> {
        let system_roots = self.get("sslrootcert").is_some_and(|(v, _)| v == "system");
        let Some((value, from)) = self.get("sslmode") else {
            return Ok(if system_roots {
                SslMode::VerifyFull
            } else {
                SslMode::Prefer
            });
        };
        let mode = SslMode::ALL.into_iter().find(|m| m.name() == value).ok_or_else(|| {
            format!("{from}={value:?}: use disable, allow, prefer, require, verify-ca or verify-full")
        })?;
        if system_roots && mode != SslMode::VerifyFull {
            return Err(format!(
                "weak sslmode \"{value}\" may not be used with sslrootcert=system (use \"verify-full\")"
            ));
        }
        Ok(mode)
    }

    /// The trust roots: a PEM file, the system store, or libpq's default file if it exists.
    /// verify-ca and verify-full without any are refused, with libpq's advice.
    fn roots(&self, sslmode: SslMode) -> Result<Option<TrustRoots>, String> {
        let roots = match self.get("sslrootcert") {
            Some((value, _)) if value == "system" => Some(system_roots_store()?),
            Some((path, from)) => Some(pem_roots_store(&path).map_err(|e| format!("{from}: {e}"))?),
            None => match self.default_file("root.crt").filter(|p| p.is_file()) {
                Some(path) => Some(
                    pem_roots_store(&path.to_string_lossy())
                        .map_err(|e| format!("sslrootcert (default {}): {e}", path.display()))?,
                ),
                None => None,
            },
        };
        if sslmode >= SslMode::VerifyCa && roots.is_none() {
            let path = self
                .default_file("root.crt")
                .map_or("~/.postgresql/root.crt".to_string(), |p| {
                    p.display().to_string()
                });
            return Err(format!(
                "sslmode={}: root certificate file \"{path}\" does not exist; either provide the file \
                 (sslrootcert=/path/ca.pem), use the system's trusted roots with sslrootcert=system, \
                 or change sslmode to disable server certificate verification",
                sslmode.name()
            ));
        }
        Ok(roots)
    }

    /// sslcert + sslkey, or libpq's default files when the certificate file exists.
    fn identity(&self) -> Result<Option<ClientIdentity>, String> {
        let key = self.get("sslkey");
        let Some((cert, cert_from)) = self.get("sslcert") else {
            if let Some((_, from)) = key {
                return Err(format!("{from} is set but sslcert is not"));
            }
            let Some(cert) = self.default_file("postgresql.crt").filter(|p| p.is_file()) else {
                return Ok(None);
            };
            let key = self.default_file("postgresql.key").unwrap_or_default();
            return load_identity(&cert.to_string_lossy(), &key.to_string_lossy())
                .map(Some)
                .map_err(|e| format!("sslcert (default {}): {e}", cert.display()));
        };
        let (key, key_from) = key
            .or_else(|| {
                let path = self.default_file("postgresql.key")?;
                Some((path.display().to_string(), "sslkey (default)".to_string()))
            })
            .ok_or_else(|| format!("{cert_from} is set but sslkey is not"))?;
        load_identity(&cert, &key)
            .map(Some)
            .map_err(|e| format!("{cert_from}/{key_from}: {e}"))
    }

    /// sslnegotiation=direct (TLS from the first byte, PostgreSQL 17) needs require or stronger.
    fn direct_negotiation(&self, sslmode: SslMode) -> Result<bool, String> {
        let direct = self.choice("sslnegotiation", &["postgres", "direct"])? == "direct";
        if direct && sslmode < SslMode::Require {
            return Err(format!(
                "weak sslmode \"{}\" may not be used with sslnegotiation=direct (use \"require\", \"verify-ca\", or \"verify-full\")",
                sslmode.name()
            ));
        }
        Ok(direct)
    }

    fn channel_binding(
        &self,
        sslmode: SslMode,
    ) -> Result<postgres::config::ChannelBinding, String> {
        use postgres::config::ChannelBinding;
        match self.choice("channel_binding", &["prefer", "disable", "require"])? {
            "disable" => Ok(ChannelBinding::Disable),
            "require" if sslmode == SslMode::Disable => Err(
                "channel_binding=require needs TLS (SCRAM-SHA-256-PLUS binds to the TLS session), but sslmode=disable".into(),
            ),
            "require" => Ok(ChannelBinding::Require),
            _ => Ok(ChannelBinding::Prefer),
        }
    }

    /// rustls speaks TLS 1.2 and 1.3 (libpq's default minimum is 1.2 as well).
    fn protocol_versions(
        &self,
    ) -> Result<&'static [&'static rustls::SupportedProtocolVersion], String> {
        let version = |key: &str| -> Result<Option<u8>, String> {
            match self.get(key) {
                None => Ok(None),
                Some((v, from)) => match v.as_str() {
                    "TLSv1" | "TLSv1.1" | "TLSv1.2" => Ok(Some(2)),
                    "TLSv1.3" => Ok(Some(3)),
                    _ => Err(format!("{from}={v:?}: use TLSv1.2 or TLSv1.3")),
                },
            }
        };
        match (
            version("ssl_min_protocol_version")?,
            version("ssl_max_protocol_version")?,
        ) {
            (Some(3), Some(2)) => {
                Err("ssl_min_protocol_version is above ssl_max_protocol_version".into())
            }
            (Some(3), _) => Ok(TLS13_ONLY),
            (_, Some(2)) => Ok(TLS12_ONLY),
            _ => Ok(rustls::ALL_VERSIONS),
        }
    }

    /// Settings libpq accepts that change nothing here: checked, so a typo is still caught.
    fn check_inert(&self) -> Result<(), String> {
        self.choice("sslcompression", &["0", "1"])?;
        if self.choice("gssencmode", &["prefer", "disable", "require"])? == "require" {
            return Err(
                "gssencmode=require: GSSAPI encryption is not supported; use TLS (sslmode)".into(),
            );
        }
        Ok(())
    }
}

impl DbSettings {
    /// Parses DATABASE_URL with libpq's rules; `env` supplies PGSSL*, PGPASSFILE and HOME.
    fn from_env(dsn: &str, env: EnvLookup) -> Result<DbSettings, String> {
        let get = |name: &str| env(name).filter(|v| !v.is_empty());
        let split = split_dsn(dsn)?;
        let mut base: postgres::Config = split
            .rest
            .parse()
            .map_err(|e| format!("not a valid PostgreSQL connection string: {e}"))?;
        let settings = LibpqSettings {
            dsn: split.own,
            env: &get,
            home: get("HOME").map(std::path::PathBuf::from),
        };
        let sslmode = settings.sslmode()?;
        let roots = settings.roots(sslmode)?;
        let identity = settings.identity()?;
        let direct = settings.direct_negotiation(sslmode)?;
        base.ssl_negotiation(if direct {
            postgres::config::SslNegotiation::Direct
        } else {
            postgres::config::SslNegotiation::Postgres
        });
        base.channel_binding(settings.channel_binding(sslmode)?);
        let sni = settings.choice("sslsni", &["1", "0"])? == "1";
        let versions = settings.protocol_versions()?;
        settings.check_inert()?;
        let mut warnings = Vec::new();
        let password = password_source(&base, &get, settings.home.as_deref(), &mut warnings)?;
        let (unix_only, local_only) = host_kinds(&base);
        if unix_only && sslmode >= SslMode::Require {
            warnings.push(format!(
                "sslmode={} has no effect over a Unix socket (as with libpq): the connection is local and unencrypted",
                sslmode.name()
            ));
        }
        Ok(DbSettings {
            base,
            sslmode,
            roots: roots.map(std::sync::Arc::new),
            identity: identity.map(std::sync::Arc::new),
            direct,
            sni,
            versions,
            password,
            unix_only,
            local_only,
            warnings,
        })
    }

    /// What the server checks of the certificate in this mode (libpq: an sslrootcert file makes
    /// prefer/require check the CA too).
    fn verify_level(&self) -> Verify {
        match self.sslmode {
            SslMode::VerifyFull => Verify::ChainAndName,
            SslMode::VerifyCa => Verify::Chain,
            _ if self.roots.is_some() => Verify::Chain,
            _ => Verify::Nothing,
        }
    }

    /// The connector for a cancel request: the same TLS settings as the connections.
    fn cancel_connector(&self) -> PgTls {
        PgTls::new(self, self.verify_level())
    }

    /// Opens one connection with libpq's sslmode semantics.
    fn connect(&self) -> Result<(postgres::Client, Negotiated), DbDown> {
        use postgres::config::SslMode as Crate;
        let (first_mode, second_mode) = match self.sslmode {
            _ if self.unix_only => (Crate::Disable, None),
            SslMode::Disable => (Crate::Disable, None),
            SslMode::Allow => (Crate::Disable, Some(Crate::Require)),
            SslMode::Prefer => (Crate::Prefer, Some(Crate::Disable)),
            _ => (Crate::Require, None),
        };
        let first = match self.attempt(first_mode) {
            Ok(connected) => return Ok(connected),
            Err(failure) => failure,
        };
        // libpq's second try: `allow` adds TLS once the server refused plaintext; `prefer`
        // drops it once TLS failed or the server refused the encrypted session.
        let retry = match self.sslmode {
            SslMode::Allow => first.server_answered,
            SslMode::Prefer => first.tls_started,
            _ => false,
        };
        match second_mode.filter(|_| retry) {
            None => Err(first.down),
            Some(mode) => self.attempt(mode).map_err(|second| {
                let (one, two) = if mode == Crate::Disable {
                    ("over TLS", "without TLS")
                } else {
                    ("without TLS", "over TLS")
                };
                DbDown {
                    reason: second.down.reason,
                    message: format!(
                        "{one}: {}; then {two}: {}",
                        first.down.message, second.down.message
                    ),
                }
            }),
        }
    }

    fn attempt(
        &self,
        mode: postgres::config::SslMode,
    ) -> Result<(postgres::Client, Negotiated), AttemptFailure> {
        let mut config = self.base.clone();
        config.ssl_mode(mode);
        self.fill_password(&mut config)
            .map_err(|down| AttemptFailure {
                down,
                tls_started: false,
                server_answered: false,
            })?;
        let tls = PgTls::new(self, self.verify_level());
        let record = tls.record.clone();
        let result = config.connect(tls);
        let handshake = lock(&record);
        match result {
            Ok(client) => Ok((
                client,
                Negotiated {
                    tls: handshake.protocol.map(|p| (p, handshake.verified)),
                },
            )),
            Err(error) => Err(AttemptFailure {
                down: self.explain_failure(&error, &handshake),
                tls_started: handshake.started,
                server_answered: error.as_db_error().is_some(),
            }),
        }
    }

    fn fill_password(&self, config: &mut postgres::Config) -> Result<(), DbDown> {
        match &self.password {
            PasswordSource::Dsn => {}
            PasswordSource::File(path) => {
                let password =
                    read_password_file(path).map_err(|e| DbDown::new("password_file", e))?;
                config.password(password);
            }
            PasswordSource::PgPass(path) => {
                if check_pgpass_file(path).is_ok() {
                    if let Some(password) = pgpass_lookup(path, config) {
                        config.password(password);
                    }
                }
            }
        }
        Ok(())
    }

    /// Turns a failed connect into what the operator needs to know, naming the settings.
    fn explain_failure(&self, error: &DbError, handshake: &HandshakeRecord) -> DbDown {
        let mode = self.sslmode.name();
        if let Some(db) = error.as_db_error() {
            let code = db.code().code();
            let text = db.message();
            let message = format!("{text} ({code})");
            let tls_used = handshake.protocol.is_some();
            return if text.contains("no pg_hba.conf entry") && !tls_used {
                DbDown::new("needs_tls", format!(
                    "{message}; the server accepts this connection only over TLS (a hostssl line in pg_hba.conf): use sslmode=require or stronger (now sslmode={mode})"
                ))
            } else if text.contains("no pg_hba.conf entry") {
                DbDown::new("refused", format!(
                    "{message}; pg_hba.conf has no line for this connection over TLS (a hostnossl line?)"
                ))
            } else if text.contains("requires a valid client certificate") {
                DbDown::new("client_certificate_missing", format!(
                    "{message}; the server's pg_hba.conf asks for a client certificate: set sslcert and sslkey in DATABASE_URL (or PGSSLCERT/PGSSLKEY)"
                ))
            } else if text.contains("certificate authentication failed") {
                DbDown::new("client_certificate_refused", format!(
                    "{message}; the client certificate's CN must be the role name (or be mapped to it in pg_ident.conf)"
                ))
            } else if code == "28P01" {
                let source = match &self.password {
                    PasswordSource::Dsn => "the password in DATABASE_URL".to_string(),
                    PasswordSource::File(path) => {
                        format!("the password from MCP_DATABASE_PASSWORD_FILE ({path})")
                    }
                    PasswordSource::PgPass(path) => format!(
                        "the password from {} (or none: no matching line)",
                        path.display()
                    ),
                };
                DbDown::new("authentication_failed", format!("{message}; used {source}"))
            } else {
                DbDown::new("refused", message)
            };
        }
        let source = std::error::Error::source(error)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let head = error.to_string();
        if head.starts_with("error performing TLS handshake") {
            if source == "server does not support TLS" {
                return DbDown::new("tls_unavailable", format!(
                    "the server does not accept TLS connections (it declined the SSLRequest), but sslmode={mode} requires TLS: turn on ssl in postgresql.conf, or lower sslmode to prefer"
                ));
            }
            let reason = handshake.refusal.as_ref().map_or("tls_failed", |(r, _)| *r);
            return DbDown::new(
                reason,
                format!("TLS handshake with the database failed: {source}"),
            );
        }
        if source.contains("channel binding") || head.contains("channel binding") {
            let why = if handshake.protocol.is_none() {
                "the connection is not encrypted, so SCRAM channel binding is impossible: the server must offer TLS and sslmode must not be disable"
            } else {
                "the server did not offer SCRAM-SHA-256-PLUS: the role needs a SCRAM password (password_encryption = scram-sha-256) and pg_hba.conf the scram-sha-256 method"
            };
            return DbDown::new(
                "channel_binding",
                format!("channel_binding=require, but {why}"),
            );
        }
        if let Some(alert) = received_alert(error) {
            if handshake.protocol.is_some() {
                let label = self.identity.as_ref().map(|i| i.label.as_str());
                return client_certificate_refused(label, alert);
            }
        }
        let reason = if head.starts_with("error connecting to server") {
            "unreachable"
        } else {
            "other"
        };
        DbDown::new(reason, describe_db_error(error))
    }
}

/// One failed connection attempt, and what decides libpq's second try.
struct AttemptFailure {
    down: DbDown,
    tls_started: bool,
    server_answered: bool,
}

/// Where the password comes from: DATABASE_URL, MCP_DATABASE_PASSWORD_FILE (never both), or
/// libpq's password file when it exists.
fn password_source(
    base: &postgres::Config,
    env: EnvLookup,
    home: Option<&std::path::Path>,
    warnings: &mut Vec<String>,
) -> Result<PasswordSource, String> {
    let in_dsn = base.get_password().is_some();
    match env("MCP_DATABASE_PASSWORD_FILE") {
        Some(_) if in_dsn => Err(
            "DATABASE_URL carries a password and MCP_DATABASE_PASSWORD_FILE is set: keep one"
                .into(),
        ),
        Some(path) => {
            read_password_file(&path)?;
            Ok(PasswordSource::File(path))
        }
        None if in_dsn => Ok(PasswordSource::Dsn),
        None => {
            let path = env("PGPASSFILE")
                .map(std::path::PathBuf::from)
                .or_else(|| home.map(|h| h.join(".pgpass")));
            match path {
                Some(path) if path.exists() => {
                    if let Err(why) = check_pgpass_file(&path) {
                        warnings.push(why);
                    }
                    Ok(PasswordSource::PgPass(path))
                }
                _ => Ok(PasswordSource::Dsn),
            }
        }
    }
}

/// (every host is a Unix socket, every host is local): libpq never uses TLS on a Unix socket,
/// and plaintext to a local host is no cause for a warning.
fn host_kinds(base: &postgres::Config) -> (bool, bool) {
    use postgres::config::Host;
    let hosts = base.get_hosts();
    let unix_only = !hosts.is_empty() && hosts.iter().all(|h| matches!(h, Host::Unix(_)));
    let local_only = hosts.iter().all(|h| match h {
        Host::Tcp(name) => is_loopback_host(name),
        Host::Unix(_) => true,
    }) && base.get_hostaddrs().iter().all(|a| a.is_loopback());
    (unix_only, local_only)
}

/// The password file's content without its trailing newline (Docker and Kubernetes secrets).
fn read_password_file(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read MCP_DATABASE_PASSWORD_FILE ({path}): {e}"))?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(format!("MCP_DATABASE_PASSWORD_FILE ({path}) is empty"));
    }
    Ok(password.to_string())
}

/// libpq ignores a password file others can read (and says so); so do we.
fn check_pgpass_file(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "password file {} is not a plain file; ignored",
            path.display()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "password file {} has group or world access; permissions should be u=rw (0600) or less; ignored",
            path.display()
        ));
    }
    Ok(())
}

/// The password of the first `host:port:database:user:password` line matching the connection
/// (`*` matches anything; `\:` and `\\` escape), as libpq looks it up.
fn pgpass_lookup(path: &std::path::Path, config: &postgres::Config) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let user = config
        .get_user()
        .map(str::to_string)
        .or_else(|| std::env::var("USER").ok())?;
    let dbname = config.get_dbname().unwrap_or(&user).to_string();
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    // libpq matches a Unix socket (or no host at all) as "localhost".
    let mut hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(_) => "localhost".to_string(),
        })
        .collect();
    if hosts.is_empty() {
        hosts.push("localhost".to_string());
    }
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let fields = split_pgpass_line(line);
            (fields.len() == 5).then_some(fields)
        })
        .find(|f| {
            let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
            hosts.iter().any(|h| matches(&f[0], h))
                && matches(&f[1], &port)
                && matches(&f[2], &dbname)
                && matches(&f[3], &user)
        })
        .map(|f| f[4].clone())
}

fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields
                .last_mut()
                .into_iter()
                .for_each(|f| f.extend(chars.next())),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().into_iter().for_each(|f| f.push(c)),
        }
    }
    fields
}

/// What one connection negotiated: TLS protocol and certificate check, or plaintext.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Negotiated {
    tls: Option<(&'static str, Verify)>,
}

impl Negotiated {
    /// For the gauge: 0 plaintext, 1 encrypted only, 2 CA checked, 3 CA and host name checked.
    fn level(self) -> i32 {
        match self.tls {
            None => 0,
            Some((_, Verify::Nothing)) => 1,
            Some((_, Verify::Chain)) => 2,
            Some((_, Verify::ChainAndName)) => 3,
        }
    }

    /// The start-up line: (level, message).
    fn describe(self, settings: &DbSettings) -> (&'static str, String) {
        let mode = settings.sslmode.name();
        match self.tls {
            Some((protocol, Verify::ChainAndName)) => {
                ("info", format!("database connection: {protocol}, certificate verified (verify-full)"))
            }
            Some((protocol, Verify::Chain)) => ("info", format!(
                "database connection: {protocol}, certificate verified against the CA, host name not checked (sslmode={mode})"
            )),
            Some((protocol, Verify::Nothing)) => ("warn", format!(
                "database connection: {protocol} encrypted, certificate NOT verified (sslmode={mode}); use verify-full with sslrootcert to know who you talk to"
            )),
            None if settings.local_only => ("info", format!("database connection: unencrypted (sslmode={mode}, local)")),
            None => ("warn", format!(
                "database connection: unencrypted (sslmode={mode}) to a host that is not loopback: passwords and data cross the network in clear"
            )),
        }
    }
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// TLS to PostgreSQL
// Contract: `PgTls` is the driver's TLS hook for one connection or cancel request: rustls with
// the ring provider over tokio-rustls (the driver's runtime). `ServerCertificateCheck` checks the
// server's certificate as far as the sslmode asks (nothing; the chain; the chain and the host
// name), webpki making every trust decision, and explains a refusal in the operator's terms;
// `HandshakeRecord` tells the caller what was negotiated or why not; `PgTlsStream` gives the
// driver the tls-server-end-point channel binding. `crypto_provider`, `read_pem_certificates`
// and `system_root_certificates` are the crypto and trust roots of every outbound TLS connection
// the server makes, whatever the client.
// ════════════════════════════════════════════════════════════════════════════════════════════

/// How much of the server's certificate a connection checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Verify {
    /// Encrypted, but anyone could be at the other end.
    #[default]
    Nothing,
    /// Signed by a trusted CA (verify-ca, or require/prefer with an sslrootcert file).
    Chain,
    /// Signed by a trusted CA and issued for the host we dialled (verify-full).
    ChainAndName,
}

/// Trust roots and how to name them in a message.
#[derive(Debug)]
struct TrustRoots {
    store: rustls::RootCertStore,
    label: String,
}

/// The client certificate chain and its key (sslcert/sslkey).
struct ClientIdentity {
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    label: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientIdentity({}, <key>)", self.label)
    }
}

const TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// The server's verdict on our client certificate, sent as a TLS alert: during the handshake
/// with TLS 1.2, on the first read after it with TLS 1.3.
fn client_certificate_refused(identity: Option<&str>, alert: rustls::AlertDescription) -> DbDown {
    use rustls::AlertDescription as A;
    let message = match (identity, alert) {
            (None, A::CertificateRequired) => "the server requires a client certificate: set sslcert and sslkey in DATABASE_URL (or PGSSLCERT/PGSSLKEY)".to_string(),
            (Some(label), A::UnknownCA | A::BadCertificate | A::CertificateUnknown | A::DecryptError) => format!(
                "the server refused our client certificate ({label}): it is not signed by a CA in the server's ssl_ca_file (TLS alert {alert:?})"
            ),
            (Some(label), A::CertificateExpired) => format!("the server refused our client certificate ({label}): it has expired"),
            (Some(label), _) => format!("the server refused our client certificate ({label}): TLS alert {alert:?}"),
            (None, _) => format!("the server ended the TLS session: TLS alert {alert:?}"),
        };
    DbDown::new("client_certificate_refused", message)
}

/// A TLS alert the server sent, found inside a driver I/O error.
fn received_alert(error: &DbError) -> Option<rustls::AlertDescription> {
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        if let Some(rustls::Error::AlertReceived(alert)) = current.downcast_ref::<rustls::Error>() {
            return Some(*alert);
        }
        if let Some(io) = current.downcast_ref::<io::Error>() {
            if let Some(rustls::Error::AlertReceived(alert)) =
                io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
            {
                return Some(*alert);
            }
        }
        source = current.source();
    }
    None
}

/// libpq refuses a private key that others can read: u=rw (0600) or less if owned by the
/// current user, u=rw,g=r (0640) or less if owned by root.
fn check_key_permissions(path: &str) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    extern "C" {
        fn geteuid() -> u32;
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read private key file \"{path}\": {e}"))?;
    if !meta.is_file() {
        return Err(format!("private key file \"{path}\" is not a regular file"));
    }
    let mode = meta.permissions().mode();
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { geteuid() };
    let too_open = if meta.uid() == euid {
        mode & 0o077 != 0
    } else {
        meta.uid() == 0 && mode & 0o037 != 0
    };
    if too_open {
        return Err(format!(
            "private key file \"{path}\" has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root"
        ));
    }
    Ok(())
}

fn load_identity(cert_path: &str, key_path: &str) -> Result<ClientIdentity, String> {
    use rustls::pki_types::pem::PemObject;
    let chain = read_pem_certificates(std::path::Path::new(cert_path))?;
    check_key_permissions(key_path)?;
    let pem = std::fs::read(key_path)
        .map_err(|e| format!("cannot read private key file \"{key_path}\": {e}"))?;
    if pem.windows(9).any(|w| w == b"ENCRYPTED") {
        return Err(format!(
            "private key file \"{key_path}\" is encrypted: decrypt it (openssl pkey -in {key_path} -out plain.pem) and protect it with chmod 600"
        ));
    }
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!("private key file \"{key_path}\" holds no usable PEM private key: {e}")
    })?;
    // Fail now, not on the first connect, if the key does not fit the certificate.
    rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(chain.clone(), key.clone_key())
        .map_err(|e| {
            format!("sslcert \"{cert_path}\" and sslkey \"{key_path}\" do not fit together: {e}")
        })?;
    Ok(ClientIdentity {
        chain,
        key,
        label: format!("sslcert={cert_path}"),
    })
}

/// The one crypto provider of every outbound TLS connection: ring (pure Rust and assembly, so
/// the musl build stays fully static and small; aws-lc-rs would bring a C/CMake build).
fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: Lazy<std::sync::Arc<rustls::crypto::CryptoProvider>> =
        Lazy::new(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()));
    PROVIDER.clone()
}

/// Every certificate of a PEM file (one CA, or a bundle such as a cloud provider's).
fn read_pem_certificates(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The operating system's trust store, found as OpenSSL would (SSL_CERT_FILE and SSL_CERT_DIR
/// first; in the distroless image /etc/ssl/certs/ca-certificates.crt).
fn system_root_certificates() -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        return Err(format!(
            "no trusted certificates found in the system trust store{}",
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join("; "))
            }
        ));
    }
    Ok(found.certs)
}

fn roots_store(
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    label: String,
) -> Result<TrustRoots, String> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{label} holds no usable CA certificate"));
    }
    Ok(TrustRoots {
        store,
        label: format!(
            "{label} ({added} CA certificate{})",
            if added == 1 { "" } else { "s" }
        ),
    })
}

fn pem_roots_store(path: &str) -> Result<TrustRoots, String> {
    let certs = read_pem_certificates(std::path::Path::new(path))?;
    roots_store(certs, format!("sslrootcert={path}"))
}

fn system_roots_store() -> Result<TrustRoots, String> {
    let certs = system_root_certificates().map_err(|e| format!("sslrootcert=system: {e}"))?;
    roots_store(certs, "the system trust store".into())
}

/// What the connector saw during one connect: filled in by the handshake and the verifier.
#[derive(Debug, Default)]
struct HandshakeRecord {
    /// The handshake began (the server accepted the SSLRequest, or sslnegotiation=direct).
    started: bool,
    protocol: Option<&'static str>,
    verified: Verify,
    /// Why the handshake failed: a reason code and the operator's message.
    refusal: Option<(&'static str, String)>,
}

type SharedRecord = std::sync::Arc<Mutex<HandshakeRecord>>;

/// The `postgres` crate's TLS hook for one connection or cancel request, over tokio-rustls.
#[derive(Clone)]
struct PgTls {
    config: Option<std::sync::Arc<rustls::ClientConfig>>,
    failure: Option<String>,
    record: SharedRecord,
    identity: Option<String>,
}

impl PgTls {
    fn new(settings: &DbSettings, verify: Verify) -> PgTls {
        let record = SharedRecord::default();
        let (config, failure) = match client_config(settings, verify, record.clone()) {
            Ok(config) => (Some(config), None),
            Err(e) => (None, Some(e)),
        };
        PgTls {
            config,
            failure,
            record,
            identity: settings.identity.as_ref().map(|i| i.label.clone()),
        }
    }
}

fn client_config(
    settings: &DbSettings,
    verify: Verify,
    record: SharedRecord,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let provider = crypto_provider();
    let check = std::sync::Arc::new(ServerCertificateCheck {
        verify,
        roots: settings.roots.clone(),
        algorithms: provider.signature_verification_algorithms,
        record,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(settings.versions)
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(check);
    let mut config = match &settings.identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| format!("{}: {e}", identity.label))?,
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = settings.sni;
    if settings.direct {
        // PostgreSQL 17 accepts a direct TLS handshake only with this ALPN protocol.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    Ok(std::sync::Arc::new(config))
}

/// A message the crate wraps as the source of its TLS error.
#[derive(Debug)]
struct TlsFailure(String);

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsFailure {}

impl postgres::tls::MakeTlsConnect<postgres::Socket> for PgTls {
    type Stream = PgTlsStream;
    type TlsConnect = PgTlsConnect;
    type Error = TlsFailure;

    fn make_tls_connect(&mut self, host: &str) -> Result<PgTlsConnect, TlsFailure> {
        // Called for Unix sockets too (with the path): a bad name only matters once TLS starts.
        Ok(PgTlsConnect {
            tls: self.clone(),
            host: host.to_string(),
        })
    }
}

struct PgTlsConnect {
    tls: PgTls,
    host: String,
}

type TlsFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<PgTlsStream, TlsFailure>> + Send>>;

impl postgres::tls::TlsConnect<postgres::Socket> for PgTlsConnect {
    type Stream = PgTlsStream;
    type Error = TlsFailure;
    type Future = TlsFuture;

    fn connect(self, stream: postgres::Socket) -> TlsFuture {
        Box::pin(async move {
            let record = self.tls.record.clone();
            lock(&record).started = true;
            let identity = self.tls.identity;
            let config = match (self.tls.config, self.tls.failure) {
                (Some(config), _) => config,
                (None, failure) => {
                    return Err(TlsFailure(
                        failure.unwrap_or_else(|| "TLS is not configured".into()),
                    ))
                }
            };
            let name =
                rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(|_| {
                    TlsFailure(format!(
                        "{:?} is not a host name or address TLS can verify",
                        self.host
                    ))
                })?;
            let connector = tokio_rustls::TlsConnector::from(config);
            match connector.connect(name, stream).await {
                Ok(tls) => {
                    let protocol = match tls.get_ref().1.protocol_version() {
                        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
                        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
                        _ => "TLS",
                    };
                    lock(&record).protocol = Some(protocol);
                    Ok(PgTlsStream(Box::new(tls)))
                }
                Err(e) => {
                    let mut handshake = lock(&record);
                    let (reason, message) = handshake.refusal.take().unwrap_or_else(|| {
                        match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                            Some(rustls::Error::AlertReceived(alert)) => {
                                let down = client_certificate_refused(identity.as_deref(), *alert);
                                (down.reason, down.message)
                            }
                            Some(rustls_error) => ("tls_failed", rustls_error.to_string()),
                            None => ("tls_failed", e.to_string()),
                        }
                    });
                    handshake.refusal = Some((reason, message.clone()));
                    Err(TlsFailure(message))
                }
            }
        })
    }
}

/// A TLS session to PostgreSQL; gives the crate the tls-server-end-point channel binding.
struct PgTlsStream(Box<tokio_rustls::client::TlsStream<postgres::Socket>>);

impl postgres::tls::TlsStream for PgTlsStream {
    fn channel_binding(&self) -> postgres::tls::ChannelBinding {
        let leaf = self
            .0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first());
        match leaf.and_then(|cert| tls_server_end_point(cert.as_ref())) {
            Some(hash) => postgres::tls::ChannelBinding::tls_server_end_point(hash),
            None => postgres::tls::ChannelBinding::none(),
        }
    }
}

impl tokio::io::AsyncRead for PgTlsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for PgTlsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// RFC 5929 tls-server-end-point: the leaf certificate hashed with its signature's hash (SHA-256
/// for MD5/SHA-1). None for algorithms without one (Ed25519, RSA-PSS), as PostgreSQL does.
fn tls_server_end_point(der: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest;
    const SHA256_IDS: [&[u8]; 4] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05], // sha1WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b], // sha256WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01],             // ecdsa-with-SHA1
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],       // ecdsa-with-SHA256
    ];
    const SHA384_IDS: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],       // ecdsa-with-SHA384
    ];
    const SHA512_IDS: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],       // ecdsa-with-SHA512
    ];
    let oid = CertificateSummary::parse(der)?.signature_algorithm;
    if SHA256_IDS.contains(&oid.as_slice()) {
        Some(sha2::Sha256::digest(der).to_vec())
    } else if SHA384_IDS.contains(&oid.as_slice()) {
        Some(sha2::Sha384::digest(der).to_vec())
    } else if SHA512_IDS.contains(&oid.as_slice()) {
        Some(sha2::Sha512::digest(der).to_vec())
    } else {
        None
    }
}

/// The fields of a certificate an operator's message and the channel binding need. Read with
/// `untrusted` (ring's bounds-checked reader) for display only: webpki makes every trust decision.
struct CertificateSummary {
    issuer: String,
    subject: String,
    not_before: String,
    not_after: String,
    signature_algorithm: Vec<u8>,
}

impl CertificateSummary {
    fn parse(der: &[u8]) -> Option<CertificateSummary> {
        untrusted::Input::from(der)
            .read_all((), |certificate| {
                let (_, body) = der_element(certificate)?;
                body.read_all((), |body| {
                    let (_, tbs) = der_element(body)?;
                    let (_, algorithm) = der_element(body)?;
                    let _signature = der_element(body)?;
                    let signature_algorithm = algorithm.read_all((), |a| {
                        let (_, oid) = der_element(a)?;
                        a.skip_to_end();
                        Ok(oid.as_slice_less_safe().to_vec())
                    })?;
                    let mut summary = tbs.read_all((), |tbs| {
                        if tbs.peek(0xa0) {
                            der_element(tbs)?; // [0] version
                        }
                        der_element(tbs)?; // serial number
                        der_element(tbs)?; // signature algorithm, again
                        let (_, issuer) = der_element(tbs)?;
                        let (_, validity) = der_element(tbs)?;
                        let (_, subject) = der_element(tbs)?;
                        tbs.skip_to_end();
                        let (not_before, not_after) = validity.read_all((), |v| {
                            let before = der_element(v)?;
                            let after = der_element(v)?;
                            Ok((der_time(before), der_time(after)))
                        })?;
                        Ok(CertificateSummary {
                            issuer: der_name(issuer),
                            subject: der_name(subject),
                            not_before,
                            not_after,
                            signature_algorithm: Vec::new(),
                        })
                    })?;
                    summary.signature_algorithm = signature_algorithm;
                    Ok(summary)
                })
            })
            .ok()
    }
}

/// One DER element: (tag, contents). Definite lengths up to 16 MiB, as certificates need.
fn der_element<'a>(reader: &mut untrusted::Reader<'a>) -> Result<(u8, untrusted::Input<'a>), ()> {
    let tag = reader.read_byte().map_err(|_| ())?;
    let first = reader.read_byte().map_err(|_| ())?;
    let length = match first {
        n if n < 0x80 => usize::from(n),
        0x81..=0x83 => {
            let mut length = 0usize;
            for _ in 0..(first - 0x80) {
                length = (length << 8) | usize::from(reader.read_byte().map_err(|_| ())?);
            }
            length
        }
        _ => return Err(()),
    };
    let contents = reader.read_bytes(length).map_err(|_| ())?;
    Ok((tag, contents))
}

/// A distinguished name as `CN=…, O=…` (the attributes people recognise; others are left out).
fn der_name(name: untrusted::Input<'_>) -> String {
    let mut parts = Vec::new();
    let _ = name.read_all((), |rdns| {
        while !rdns.at_end() {
            let (_, set) = der_element(rdns)?;
            let _ = set.read_all((), |set| {
                while !set.at_end() {
                    let (_, pair) = der_element(set)?;
                    let _ = pair.read_all((), |pair| {
                        let (_, oid) = der_element(pair)?;
                        let (_, value) = der_element(pair)?;
                        let label = match oid.as_slice_less_safe() {
                            [0x55, 0x04, 0x03] => "CN",
                            [0x55, 0x04, 0x0a] => "O",
                            [0x55, 0x04, 0x0b] => "OU",
                            [0x55, 0x04, 0x06] => "C",
                            [0x55, 0x04, 0x07] => "L",
                            [0x55, 0x04, 0x08] => "ST",
                            _ => return Ok(()),
                        };
                        let text = String::from_utf8_lossy(value.as_slice_less_safe());
                        parts.push(format!("{label}={text}"));
                        Ok(())
                    });
                }
                Ok(())
            });
        }
        Ok(())
    });
    if parts.is_empty() {
        "(no common name)".to_string()
    } else {
        parts.join(", ")
    }
}

/// UTCTime / GeneralizedTime as `2025-01-31 23:59:59 UTC`.
fn der_time((tag, value): (u8, untrusted::Input<'_>)) -> String {
    let text = String::from_utf8_lossy(value.as_slice_less_safe()).to_string();
    let digits = text.trim_end_matches('Z');
    let full = match tag {
        0x17 if digits.len() >= 12 => {
            let century = if digits[..2] < *"50" { "20" } else { "19" };
            format!("{century}{digits}")
        }
        0x18 => digits.to_string(),
        _ => return text,
    };
    match (
        full.get(0..4),
        full.get(4..6),
        full.get(6..8),
        full.get(8..10),
        full.get(10..12),
        full.get(12..14),
    ) {
        (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) => {
            format!("{y}-{mo}-{d} {h}:{mi}:{s} UTC")
        }
        _ => text,
    }
}

/// Checks the server's certificate as far as the sslmode asks, and explains a refusal.
#[derive(Debug)]
struct ServerCertificateCheck {
    verify: Verify,
    roots: Option<std::sync::Arc<TrustRoots>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
    record: SharedRecord,
}

impl rustls::client::danger::ServerCertVerifier for ServerCertificateCheck {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verdict = self.check(end_entity, intermediates, server_name, now);
        let mut record = lock(&self.record);
        match verdict {
            Ok(()) => {
                record.verified = self.verify;
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            Err((error, reason, message)) => {
                record.refusal = Some((reason, message));
                Err(error)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ServerCertificateCheck {
    /// Ok, or (rustls's error for the alert, reason code, operator message).
    fn check(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        now: rustls::pki_types::UnixTime,
    ) -> Result<(), (rustls::Error, &'static str, String)> {
        if self.verify == Verify::Nothing {
            return Ok(());
        }
        let Some(roots) = self.roots.as_ref() else {
            let message = "no trust roots configured (sslrootcert)".to_string();
            return Err((
                rustls::Error::General(message.clone()),
                "tls_failed",
                message,
            ));
        };
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity).map_err(|e| {
            let message = format!("the server's certificate cannot be parsed: {e}");
            (e, "tls_bad_certificate", message)
        })?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots.store,
            intermediates,
            now,
            self.algorithms.all,
        )
        .and_then(|()| match self.verify {
            Verify::ChainAndName => rustls::client::verify_server_name(&parsed, server_name),
            _ => Ok(()),
        })
        .map_err(|e| {
            let (reason, message) = explain_certificate_error(&e, end_entity, roots, now);
            (e, reason, message)
        })
    }
}

/// A certificate refusal in the operator's terms: which CA, which names, which dates.
fn explain_certificate_error(
    error: &rustls::Error,
    end_entity: &[u8],
    roots: &TrustRoots,
    now: rustls::pki_types::UnixTime,
) -> (&'static str, String) {
    use rustls::CertificateError as E;
    let summary = CertificateSummary::parse(end_entity);
    let subject = summary
        .as_ref()
        .map_or("?".to_string(), |s| s.subject.clone());
    let issuer = summary
        .as_ref()
        .map_or("?".to_string(), |s| s.issuer.clone());
    let validity = summary.as_ref().map_or(String::new(), |s| {
        format!("valid from {} until {}", s.not_before, s.not_after)
    });
    let now = format_unix_time(now.as_secs());
    let rustls::Error::InvalidCertificate(certificate_error) = error else {
        return (
            "tls_bad_certificate",
            format!("the server's certificate was refused: {error}"),
        );
    };
    let self_signed = summary.as_ref().is_some_and(|s| s.subject == s.issuer);
    match certificate_error {
        E::UnknownIssuer | E::Other(_) if self_signed => ("tls_untrusted_certificate", format!(
            "the server's certificate is self-signed ({subject}) and not in {}: put that certificate (or the CA that should issue the server's) into the sslrootcert file, or use sslmode=require to encrypt without checking",
            roots.label
        )),
        E::UnknownIssuer => {
            let what = format!("({subject}) was issued by '{issuer}'");
            ("tls_untrusted_certificate", format!(
                "the server's certificate {what}, which is not a CA in {}: add the CA certificate that issued it to the sslrootcert file (managed services publish a CA bundle), or use sslrootcert=system if a public CA issued it",
                roots.label
            ))
        }
        E::NotValidForNameContext { expected, presented } => {
            let expected = match expected {
                rustls::pki_types::ServerName::DnsName(name) => name.as_ref().to_string(),
                rustls::pki_types::ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
                other => format!("{other:?}"),
            };
            // rustls lists them as `DnsName("db.example.com")` / `IpAddress(…)`: keep the name.
            let names: Vec<&str> = presented
                .iter()
                .map(|p| {
                    let inner = p.split_once('(').map_or(p.as_str(), |(_, rest)| rest);
                    inner.trim_end_matches(')').trim_matches('"')
                })
                .collect();
            let names = if names.is_empty() {
                "no host names (no subjectAltName)".to_string()
            } else {
                names.join(", ")
            };
            ("tls_hostname_mismatch", format!(
                "the server's certificate is for {names}, not for '{expected}' (sslmode=verify-full checks the host name): connect with a host name the certificate lists, or reissue the certificate with '{expected}' in its subjectAltName"
            ))
        }
        E::NotValidForName => ("tls_hostname_mismatch", format!(
            "the server's certificate ({subject}) is not for the host name we connected to (sslmode=verify-full checks it)"
        )),
        E::Expired | E::ExpiredContext { .. } => ("tls_certificate_expired", format!(
            "the server's certificate ({subject}) has expired: it is {validity}, and now is {now}; renew it on the server (ssl_cert_file)"
        )),
        E::NotValidYet | E::NotValidYetContext { .. } => ("tls_certificate_not_yet_valid", format!(
            "the server's certificate ({subject}) is not valid yet: it is {validity}, and now is {now}; check the clocks of both machines"
        )),
        other => ("tls_bad_certificate", format!("the server's certificate ({subject}, issued by '{issuer}') was refused: {other:?}")),
    }
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// Fair share per analyst
// Contract: the pool's MCP_POOL_MAX connections are handed out by `Admission`, not first come
// first served: a free connection goes to the waiting call whose analyst holds the fewest (the
// oldest call among equals), and an analyst already holding MCP_MAX_INFLIGHT_PER_CALLER waits
// for their own calls without taking, or queueing ahead for, a connection anyone else could use.
// Every wait is bounded (MCP_POOL_WAIT_MS, or what is left of a batch's time) and ends in a tool
// error naming the limit. `RateLimiter` is the optional MCP_RATE_PER_CALLER token bucket. Both
// are keyed by `Caller.name` and keep an analyst only while they have calls in flight or a bucket
// still refilling, so their size follows the work in progress, never the number of names seen.
// ════════════════════════════════════════════════════════════════════════════════════════════

/// Who a unit of database work is for and when it must be over.
struct Claim<'a> {
    /// The analyst whose share it counts against; None when there are no analysts to share
    /// between (no tokens configured, everyone is "anonymous").
    analyst: Option<&'a str>,
    /// A batch's shared deadline; None for a request of its own.
    deadline: Option<Instant>,
}

struct Admission {
    capacity: usize,
    per_analyst: usize,
    state: Mutex<AdmissionState>,
    changed: Condvar,
}

#[derive(Default)]
struct AdmissionState {
    /// Connections handed out, including ones granted to a waiter that has not woken up yet.
    in_use: usize,
    next_ticket: u64,
    /// Calls waiting for a connection, oldest first.
    queue: Vec<Waiter>,
    /// Connections held per analyst; an analyst holding none has no entry.
    held: HashMap<String, usize>,
}

struct Waiter {
    ticket: u64,
    analyst: Option<String>,
    granted: bool,
}

/// Why a call got no connection in time.
#[derive(Debug, PartialEq)]
enum NotAdmitted {
    /// Every connection was busy with other calls.
    PoolBusy,
    /// The analyst's own calls held their whole share the entire time.
    ShareFull,
}

/// One connection's worth of the pool, given back when dropped.
struct Admitted<'a> {
    admission: &'a Admission,
    analyst: Option<String>,
}

/// What /metrics shows of the admission.
struct AdmissionUsage {
    in_use: usize,
    waiting: usize,
    /// Waiting calls whose analyst is at its share (they wait for their own calls).
    waiting_for_own: usize,
    analysts: usize,
}

impl Admission {
    fn new(capacity: usize, per_analyst: usize) -> Admission {
        Admission {
            capacity,
            per_analyst,
            state: Mutex::new(AdmissionState::default()),
            changed: Condvar::new(),
        }
    }

    /// Waits until this call may use a connection, at most until `until`.
    fn enter(&self, analyst: Option<&str>, until: Instant) -> Result<Admitted<'_>, NotAdmitted> {
        let mut state = lock(&self.state);
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push(Waiter {
            ticket,
            analyst: analyst.map(String::from),
            granted: false,
        });
        if self.hand_out(&mut state) {
            self.changed.notify_all();
        }
        loop {
            let Some(index) = state.queue.iter().position(|w| w.ticket == ticket) else {
                return Err(NotAdmitted::PoolBusy);
            };
            if state.queue[index].granted {
                let waiter = state.queue.remove(index);
                return Ok(Admitted {
                    admission: self,
                    analyst: waiter.analyst,
                });
            }
            let now = Instant::now();
            if now >= until {
                state.queue.remove(index);
                let held = analyst.and_then(|a| state.held.get(a)).copied();
                return Err(if held.is_some_and(|n| n >= self.per_analyst) {
                    NotAdmitted::ShareFull
                } else {
                    NotAdmitted::PoolBusy
                });
            }
            state = self
                .changed
                .wait_timeout(state, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// /readyz's probe: a connection only when one is free. Calls still queued then wait for
    /// their own analyst's share (`hand_out` has granted every other), so none is passed over.
    fn try_enter(&self) -> Option<Admitted<'_>> {
        let mut state = lock(&self.state);
        if state.in_use >= self.capacity {
            return None;
        }
        state.in_use += 1;
        Some(Admitted {
            admission: self,
            analyst: None,
        })
    }

    /// Hands free connections to the waiting calls that deserve them most: the analyst holding
    /// the fewest first, the oldest call among equals, analysts at their share skipped. True
    /// when anything was handed out (the waiters must then be woken).
    fn hand_out(&self, state: &mut AdmissionState) -> bool {
        let mut granted = false;
        while state.in_use < self.capacity {
            let held = |waiter: &Waiter| {
                waiter
                    .analyst
                    .as_ref()
                    .and_then(|a| state.held.get(a))
                    .copied()
                    .unwrap_or(0)
            };
            let best = state
                .queue
                .iter()
                .enumerate()
                .filter(|(_, w)| !w.granted && held(w) < self.per_analyst)
                .min_by_key(|(index, w)| (held(w), *index))
                .map(|(index, _)| index);
            let Some(index) = best else { break };
            let waiter = &mut state.queue[index];
            waiter.granted = true;
            if let Some(analyst) = waiter.analyst.clone() {
                *state.held.entry(analyst).or_insert(0) += 1;
            }
            state.in_use += 1;
            granted = true;
        }
        granted
    }

    fn release(&self, analyst: Option<&str>) {
        let mut state = lock(&self.state);
        state.in_use -= 1;
        if let Some(analyst) = analyst {
            if let Some(held) = state.held.get_mut(analyst) {
                *held -= 1;
                if *held == 0 {
                    state.held.remove(analyst);
                }
            }
        }
        self.hand_out(&mut state);
        drop(state);
        self.changed.notify_all();
    }

    fn usage(&self) -> AdmissionUsage {
        let state = lock(&self.state);
        let at_share = |w: &Waiter| {
            w.analyst
                .as_ref()
                .and_then(|a| state.held.get(a))
                .is_some_and(|n| *n >= self.per_analyst)
        };
        let waiting = || state.queue.iter().filter(|w| !w.granted);
        AdmissionUsage {
            in_use: state.in_use,
            waiting: waiting().count(),
            waiting_for_own: waiting().filter(|w| at_share(w)).count(),
            analysts: state.held.len(),
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.admission.release(self.analyst.as_deref());
    }
}

/// MCP_RATE_PER_CALLER: a token bucket per analyst holding a minute's worth of calls, refilled
/// continuously. Off (every call allowed, nothing stored) when the rate is 0.
struct RateLimiter {
    per_minute: u64,
    buckets: Mutex<RateBuckets>,
}

struct RateBuckets {
    by_analyst: HashMap<String, Bucket>,
    swept: Instant,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    fn new(per_minute: u64) -> RateLimiter {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(RateBuckets {
                by_analyst: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// Takes one call from the analyst's bucket, or says in how many seconds the next is allowed.
    fn take(&self, analyst: &str, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let mut buckets = lock(&self.buckets);
        if now.saturating_duration_since(buckets.swept) >= Duration::from_secs(1) {
            self.sweep(&mut buckets, now);
        }
        let full = Bucket {
            tokens: self.per_minute as f64,
            at: now,
        };
        let bucket = match buckets.by_analyst.get_mut(analyst) {
            Some(bucket) => bucket,
            None => buckets
                .by_analyst
                .entry(analyst.to_string())
                .or_insert(full),
        };
        let tokens = self.refilled(bucket, now);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            return Ok(());
        }
        *bucket = Bucket { tokens, at: now };
        let seconds_per_call = 60.0 / self.per_minute as f64;
        Err(((1.0 - tokens) * seconds_per_call).ceil().max(1.0) as u64)
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let per_second = self.per_minute as f64 / 60.0;
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * per_second).min(self.per_minute as f64)
    }

    /// Forgets analysts whose bucket is full again: a full bucket is what a newcomer gets anyway.
    fn sweep(&self, buckets: &mut RateBuckets, now: Instant) {
        let full = self.per_minute as f64;
        buckets
            .by_analyst
            .retain(|_, bucket| self.refilled(bucket, now) < full);
        buckets.swept = now;
    }

    /// Analysts with a bucket still refilling (after forgetting the full ones).
    fn tracked(&self, now: Instant) -> usize {
        let mut buckets = lock(&self.buckets);
        self.sweep(&mut buckets, now);
        buckets.by_analyst.len()
    }
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// Pool and database
// Contract: a lazy `Mutex<Vec<Client>>` of idle connections behind MCP_POOL_MAX permits handed
// out fairly between analysts (see Fair share). Every unit of work runs in `BEGIN READ ONLY` with its settings made
// `LOCAL` (so nothing depends on server defaults and PgBouncer transaction pooling stays safe),
// as the analyst's own role when MCP_ANALYST_ROLES gives one (`SET LOCAL ROLE`, see below), and
// always ends with ROLLBACK and the session cleanup. A connection that was lost is
// discarded (with every idle sibling, which likely died with it) and the work is retried once
// on a fresh connection. That retry never repeats anything a client saw: an answer is sent only
// once it is complete, so no row of the lost attempt reached anyone, and the statement only
// reads. Any other error keeps the connection and is reported, never retried.
// ════════════════════════════════════════════════════════════════════════════════════════════

type DbError = postgres::Error;

/// One database the server serves: its name and label (as list_databases shows them), the
/// configuration it serves with (Config::for_database) and its own pool — with it its own
/// connection limit, fair share, role check and watchdog.
struct Database {
    name: String,
    label: String,
    config: Config,
    pool: Pool,
}

/// Every database, the default first; never empty (Config refuses a list without one).
struct Databases {
    default: Database,
    others: Vec<Database>,
    /// Named by MCP_DATABASES / MCP_DATABASES_FILE: errors, audit lines and metrics name them.
    named: bool,
}

impl Databases {
    fn new(config: &Config) -> Databases {
        let mut all = config.databases.iter().map(|spec| {
            let own = config.for_database(spec);
            let mut pool = Pool::new(&own);
            if config.named_databases {
                pool.name = spec.name.clone();
            }
            Database {
                name: spec.name.clone(),
                label: spec.label.clone(),
                pool,
                config: own,
            }
        });
        let default = all.next().unwrap_or_else(|| Database {
            name: "default".into(),
            label: "default".into(),
            pool: Pool::new(config),
            config: config.clone(),
        });
        Databases {
            default,
            others: all.collect(),
            named: config.named_databases,
        }
    }

    fn all(&self) -> impl Iterator<Item = &Database> {
        std::iter::once(&self.default).chain(self.others.iter())
    }

    /// The database a tool call names (None: the default), or what the names are.
    fn find(&self, name: Option<&str>) -> Result<&Database, String> {
        let Some(name) = name else {
            return Ok(&self.default);
        };
        self.all().find(|db| db.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.all().map(|db| db.name.as_str()).collect();
            format!(
                "unknown database {:?} (databases: {}; list_databases describes them)",
                excerpt(name, MAX_ECHO_CHARS),
                names.join(", ")
            )
        })
    }
}

/// A database connection that keeps the open-connection gauge honest when dropped.
struct PooledClient {
    client: postgres::Client,
    /// Its pool's count of open connections.
    open: std::sync::Arc<AtomicU64>,
    idle_since: Instant,
    /// The backend of its previous transaction (a change means a transaction pooler).
    backend_pid: Option<i32>,
    /// The backend where the driver prepared its cached type-lookup statements, if it did.
    driver_cache_pid: Option<i32>,
    /// How this connection ends a unit of work (see SessionCleanup).
    cleanup: SessionCleanup,
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Pool {
    /// The database's name when the databases are named (MCP_DATABASES), for log lines.
    name: String,
    database: DbSettings,
    idle: Mutex<Vec<PooledClient>>,
    /// Connections open now, idle or in use.
    open: std::sync::Arc<AtomicU64>,
    permits: Admission,
    idle_limit: Duration,
    wait_limit: Duration,
    statement_timeout_ms: u64,
    begin_sql: String,
    /// A transaction pooler was noticed (see `Pool::begin`).
    behind_pooler: AtomicBool,
    allow_privileged_role: bool,
    role_checked: AtomicBool,
    /// Roles of MCP_ANALYST_ROLES's name=role entries, checked with the login role.
    mapped_roles: Vec<String>,
    /// Each analyst role's self-check verdict (Err: what it could do), from its first use.
    role_verdicts: Mutex<BTreeMap<String, Result<(), String>>>,
    retries: AtomicU64,
    disconnects: AtomicU64,
    db_errors: Mutex<BTreeMap<String, u64>>,
    watchdog: Watchdog,
    /// What the newest connection negotiated (logged when it changes) and its gauge level.
    negotiated: Mutex<Option<Negotiated>>,
    tls_level: AtomicI32,
}

impl Pool {
    fn new(config: &Config) -> Pool {
        let mut database = config.database.clone();
        let base = &mut database.base;
        if base.get_application_name().is_none() {
            base.application_name(SERVER_NAME);
        }
        if base.get_connect_timeout().is_none() {
            base.connect_timeout(Duration::from_secs(5));
        }
        base.keepalives_idle(Duration::from_secs(60));
        let timeout = config.statement_timeout_ms;
        Pool {
            name: String::new(),
            open: std::sync::Arc::new(AtomicU64::new(0)),
            negotiated: Mutex::new(None),
            tls_level: AtomicI32::new(-1),
            database,
            idle: Mutex::new(Vec::new()),
            permits: Admission::new(config.pool_max, config.max_inflight_per_caller),
            idle_limit: config.pool_idle,
            wait_limit: config.pool_wait,
            statement_timeout_ms: timeout,
            begin_sql: begin_sql(timeout, false),
            behind_pooler: AtomicBool::new(false),
            allow_privileged_role: config.allow_privileged_role,
            role_checked: AtomicBool::new(false),
            mapped_roles: config
                .analyst_roles
                .as_ref()
                .map_or_else(Vec::new, |roles| {
                    let mut mapped: Vec<String> = roles
                        .explicit
                        .iter()
                        .map(|(_, role)| role.clone())
                        .collect();
                    mapped.sort();
                    mapped.dedup();
                    mapped
                }),
            role_verdicts: Mutex::new(BTreeMap::new()),
            retries: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            db_errors: Mutex::new(BTreeMap::new()),
            watchdog: Watchdog::default(),
        }
    }

    /// Runs `work` in one read-only transaction on a pooled connection (see the section contract),
    /// once the claim's analyst is admitted, with the statement timeout cut to what is left of
    /// the claim's deadline.
    fn read_only<T>(
        &self,
        claim: &Claim,
        mut work: impl FnMut(&mut Session) -> Result<T, DbError>,
    ) -> Result<T, ToolFailure> {
        let arrived = Instant::now();
        let out_of_time = || {
            ToolFailure::OutOfTime(
                self.wait_limit + Duration::from_millis(self.statement_timeout_ms),
            )
        };
        let wait_until = claim.deadline.map_or(arrived + self.wait_limit, |d| {
            d.min(arrived + self.wait_limit)
        });
        let _admitted = self
            .permits
            .enter(claim.analyst, wait_until)
            .map_err(|refusal| match refusal {
                _ if claim.deadline.is_some_and(|d| Instant::now() >= d) => out_of_time(),
                NotAdmitted::PoolBusy => ToolFailure::Busy(self.wait_limit),
                NotAdmitted::ShareFull => ToolFailure::CallerBusy {
                    limit: self.permits.per_analyst,
                    waited: arrived.elapsed(),
                },
            })?;
        let timeout_ms = match claim.deadline {
            None => self.statement_timeout_ms,
            // Rounded up, so the statement is cancelled at the deadline, never just before it.
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => self
                    .statement_timeout_ms
                    .min(left.as_micros().div_ceil(1000) as u64),
                _ => return Err(out_of_time()),
            },
        };
        let mut attempt = 0;
        let mut fresh_only = false;
        loop {
            // The retry always takes a fresh connection: the idle ones may have died together.
            let reusable = if attempt == 0 && !fresh_only {
                self.take_idle()
            } else {
                None
            };
            let mut pooled = match reusable {
                Some(pooled) => pooled,
                None => self
                    .connect()
                    .map_err(|down| ToolFailure::Unavailable(down.message))?,
            };
            let watch = self.watchdog.watch(
                &pooled.client,
                Duration::from_millis(timeout_ms) + Duration::from_secs(5),
            );
            let begun = self.begin(&mut pooled, &watch, timeout_ms);
            let result = match begun {
                Ok(Begun::Ready { read_at, database }) => {
                    let mut session = Session {
                        client: &mut pooled.client,
                        custom_types: false,
                        read_at,
                        database,
                    };
                    let result = work(&mut session);
                    let custom_types = session.custom_types;
                    result.map(|value| (value, custom_types))
                }
                Ok(Begun::StaleDriverCache) => {
                    // This connection's driver cache belongs to another server session: replace
                    // the connection before any work (a fresh one has no cache).
                    let _ = end_transaction(&mut pooled.client, &pooled.cleanup, true, false);
                    drop(watch);
                    drop(pooled);
                    fresh_only = true;
                    continue;
                }
                Err(error) => Err(error),
            };
            // Behind a pooler the driver's type-lookup statements must not outlive this
            // transaction: they are deallocated here and the connection is not reused.
            let custom_types = result.as_ref().is_ok_and(|(_, custom)| *custom);
            let drop_driver_cache = custom_types && self.behind_pooler();
            let ended = end_transaction(
                &mut pooled.client,
                &pooled.cleanup,
                result.is_err(),
                drop_driver_cache,
            );
            if custom_types && pooled.driver_cache_pid.is_none() {
                pooled.driver_cache_pid = pooled.backend_pid;
            }
            let result = result.map(|(value, _)| value);
            drop(watch);
            match result {
                Ok(value) => {
                    self.give_back(pooled, ended.is_ok() && !drop_driver_cache);
                    return Ok(value);
                }
                Err(error) if is_stale_driver_statement(&error) => {
                    // A pooler the port check could not see: from now on it is known.
                    self.note_pooler("a driver statement was missing on, or already taken in, the server session");
                    drop(pooled);
                    if attempt == 0 {
                        attempt += 1;
                        self.retries.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    return Err(self.failure_from(&error, timeout_ms));
                }
                Err(error) if is_disconnect(&error) || pooled.client.is_closed() => {
                    self.disconnects.fetch_add(1, Ordering::Relaxed);
                    self.discard_idle();
                    drop(pooled);
                    if attempt == 0 {
                        attempt += 1;
                        self.retries.fetch_add(1, Ordering::Relaxed);
                        log_event(
                            "warn",
                            "database connection lost; retrying once on a fresh connection",
                            &[("error", &describe_db_error(&error))],
                        );
                        continue;
                    }
                    return Err(ToolFailure::Unavailable(format!(
                        "connection lost during the query: {}",
                        describe_db_error(&error)
                    )));
                }
                Err(error) => {
                    self.give_back(pooled, ended.is_ok() && !drop_driver_cache);
                    return Err(self.failure_from(&error, timeout_ms));
                }
            }
        }
    }

    /// Opens the unit of work. Each transaction learns its backend pid at no extra round trip;
    /// a change between two transactions of one connection means a transaction pooler.
    fn begin(
        &self,
        pooled: &mut PooledClient,
        watch: &WatchGuard,
        timeout_ms: u64,
    ) -> Result<Begun, DbError> {
        use postgres::SimpleQueryMessage::Row;
        let behind_pooler = self.behind_pooler();
        let sql = if timeout_ms == self.statement_timeout_ms && !behind_pooler {
            std::borrow::Cow::Borrowed(&self.begin_sql)
        } else {
            std::borrow::Cow::Owned(begin_sql(timeout_ms, behind_pooler))
        };
        let messages = pooled.client.simple_query(&sql)?;
        let Some(row) = messages.iter().find_map(|m| match m {
            Row(row) => Some(row),
            _ => None,
        }) else {
            return Ok(Begun::Ready {
                read_at: String::new(),
                database: String::new(),
            });
        };
        let column = |i: usize| row.get(i).unwrap_or_default().to_string();
        let backend = row
            .get(0)
            .and_then(|pid| pid.parse::<i32>().ok())
            .zip(row.get(1).map(str::to_string));
        let pid = backend.as_ref().map(|(pid, _)| *pid);
        watch.identify(backend);
        let previous = std::mem::replace(&mut pooled.backend_pid, pid);
        if previous.is_some() && pid.is_some() && previous != pid {
            self.note_pooler("one connection's transactions ran on different backends");
        }
        match pooled.driver_cache_pid {
            Some(cached) if self.behind_pooler() || Some(cached) != pid => {
                Ok(Begun::StaleDriverCache)
            }
            _ => Ok(Begun::Ready {
                read_at: column(8),
                database: column(9),
            }),
        }
    }

    fn behind_pooler(&self) -> bool {
        self.behind_pooler.load(Ordering::Relaxed)
    }

    /// Switches to pooler-safe transactions (once, logged).
    fn note_pooler(&self, why: &str) {
        if !self.behind_pooler.swap(true, Ordering::SeqCst) {
            log_event(
                "info",
                "database connections go through a pooler or proxy: the driver's cached type-lookup statements \
                 (enums, domains, PostGIS types) now live for one transaction only",
                &[("why", why)],
            );
        }
    }

    /// At the first connection: a server port other than the one dialled means something (a
    /// pooler such as PgBouncer, or a port mapping) sits in between.
    fn check_for_pooler(&self, client: &mut postgres::Client) {
        let dialled = self
            .database
            .base
            .get_ports()
            .first()
            .copied()
            .unwrap_or(5432);
        let tcp = matches!(
            self.database.base.get_hosts().first(),
            Some(postgres::config::Host::Tcp(_))
        );
        let Ok(rows) = client.query_typed("SELECT inet_server_port()", &[]) else {
            return;
        };
        let port: Option<i32> = rows.first().and_then(|row| row.try_get(0).ok());
        if let (true, Some(port)) = (tcp, port) {
            if port != i32::from(dialled) {
                self.note_pooler(&format!(
                    "the server reports port {port}, the connection was made to port {dialled}"
                ));
            }
        }
    }

    /// `timeout_ms` is the statement timeout the work ran with (less than the configured one
    /// when a batch's deadline was near).
    fn failure_from(&self, error: &DbError, timeout_ms: u64) -> ToolFailure {
        let Some(db) = error.as_db_error() else {
            return ToolFailure::Database {
                message: error.to_string(),
                sqlstate: "XX000".into(),
            };
        };
        let sqlstate = db.code().code().to_string();
        *lock(&self.db_errors)
            .entry(sqlstate[..2].to_string())
            .or_insert(0) += 1;
        let message = if sqlstate == "57014" && db.message().contains("statement timeout") {
            if timeout_ms < self.statement_timeout_ms {
                format!(
                    "statement timeout after {}: the batch's shared time ran out (a batch may take \
                     MCP_POOL_WAIT_MS + MCP_STATEMENT_TIMEOUT_MS in all); send long queries in their own request",
                    human_duration(timeout_ms)
                )
            } else {
                format!(
                    "statement timeout after {} (the query ran too long; narrow it or aggregate)",
                    human_duration(timeout_ms)
                )
            }
        } else {
            let mut message = db.message().to_string();
            if let Some(hint) = db.hint() {
                let _ = write!(message, "; hint: {hint}");
            }
            message
        };
        ToolFailure::Database { message, sqlstate }
    }

    fn take_idle(&self) -> Option<PooledClient> {
        let mut idle = lock(&self.idle);
        while let Some(pooled) = idle.pop() {
            if pooled.idle_since.elapsed() < self.idle_limit && !pooled.client.is_closed() {
                return Some(pooled);
            }
        }
        None
    }

    fn give_back(&self, mut pooled: PooledClient, healthy: bool) {
        let stale_cache = pooled.driver_cache_pid.is_some() && self.behind_pooler();
        if healthy && !pooled.client.is_closed() && !stale_cache {
            pooled.idle_since = Instant::now();
            lock(&self.idle).push(pooled);
        }
    }

    /// Drops every idle connection: after one was found dead, its siblings probably are too.
    fn discard_idle(&self) {
        let stale: Vec<PooledClient> = lock(&self.idle).drain(..).collect();
        drop(stale);
    }

    /// Closes connections idle longer than MCP_POOL_IDLE_S (called periodically).
    fn reap_idle(&self) {
        let expired: Vec<PooledClient> = {
            let mut idle = lock(&self.idle);
            let (keep, expired): (Vec<_>, Vec<_>) = idle
                .drain(..)
                .partition(|p| p.idle_since.elapsed() < self.idle_limit);
            *idle = keep;
            expired
        };
        drop(expired);
    }

    /// Opens a connection; the first one that succeeds also runs the role check.
    fn connect(&self) -> Result<PooledClient, DbDown> {
        let (mut client, negotiated) = self.database.connect()?;
        self.open.fetch_add(1, Ordering::Relaxed);
        self.report_negotiated(negotiated);
        let cleanup = SessionCleanup::for_connection(&mut client);
        let mut pooled = PooledClient {
            client,
            open: std::sync::Arc::clone(&self.open),
            idle_since: Instant::now(),
            backend_pid: None,
            driver_cache_pid: None,
            cleanup,
        };
        if !self.role_checked.load(Ordering::SeqCst) {
            self.check_for_pooler(&mut pooled.client);
            self.check_role(&mut pooled.client);
        }
        Ok(pooled)
    }

    /// Logs what a connection negotiated the first time, and again whenever it changes (say,
    /// `prefer` fell back to plaintext after a server restart).
    fn report_negotiated(&self, negotiated: Negotiated) {
        self.tls_level.store(negotiated.level(), Ordering::Relaxed);
        let mut last = lock(&self.negotiated);
        if *last == Some(negotiated) {
            return;
        }
        *last = Some(negotiated);
        drop(last);
        let (level, message) = negotiated.describe(&self.database);
        log_event(level, &message, &[]);
    }

    /// /readyz: can we reach the database right now? Never waits for a busy pool (a busy pool
    /// means the database is answering).
    fn probe(&self) -> Result<(), DbDown> {
        let Some(_admitted) = self.permits.try_enter() else {
            return Ok(());
        };
        let mut pooled = match self.take_idle() {
            Some(pooled) => pooled,
            None => self.connect()?,
        };
        match pooled.client.is_valid(Duration::from_secs(2)) {
            Ok(()) => {
                self.give_back(pooled, true);
                Ok(())
            }
            Err(e) => Err(DbDown::new("unreachable", describe_db_error(&e))),
        }
    }

    /// (open, idle, admission)
    fn gauges(&self) -> (u64, usize, AdmissionUsage) {
        let idle = lock(&self.idle).len();
        (
            self.open.load(Ordering::Relaxed),
            idle,
            self.permits.usage(),
        )
    }
}

/// What opens every unit of work: a read-only transaction and its settings, all `LOCAL`, and
/// (same round trip) the backend pid and transaction start (see `Pool::begin` and
/// `Pool::cancel`) and, for provenance, the transaction's timestamp and the database. Behind a
/// transaction pooler it first clears the server session of statements another client's driver
/// left there.
fn begin_sql(statement_timeout_ms: u64, behind_pooler: bool) -> String {
    format!(
        "BEGIN READ ONLY; {}SELECT pg_backend_pid(), extract(epoch FROM now())::text, \
         set_config('statement_timeout', '{statement_timeout_ms}', true), \
         set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true), \
         set_config('IntervalStyle', 'iso_8601', true), set_config('bytea_output', 'hex', true), \
         set_config('extra_float_digits', '1', true), \
         to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), current_database()",
        if behind_pooler {
            "DEALLOCATE ALL; "
        } else {
            ""
        }
    )
}

fn human_duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// What survives a ROLLBACK and must not reach the next request, cleared after every unit of
/// work: session advisory locks (released), statements made with SQL `PREPARE` (say, by EXECUTE
/// inside a function; counted, then deallocated), and where the extensions are installed and
/// the role may call them, hypopg's hypothetical indexes and dblink's connections — a function
/// the guard cannot look into may have made them. Written without a subquery for the
/// common case: this runs on every call and planning counts.
struct SessionCleanup {
    /// Run inside the transaction after a successful call, then ROLLBACK.
    inside: String,
    /// ROLLBACK, then the cleanup (after a failed call, or when `inside` failed).
    after: String,
    /// The same two, also deallocating every prepared statement of the server session (behind a
    /// transaction pooler, see `Pool::read_only`).
    inside_dropping_statements: String,
    after_dropping_statements: String,
}

/// Which hygiene the extensions in this database need (and the role may run): SQL to add to
/// the cleanup's select list, and statements to run after it (dblink's unnamed connection can
/// only be closed by a call that fails when there is none). One query per new connection.
const CLEANUP_EXTENSIONS_SQL: &str = "WITH callable AS (
   SELECT e.extname, n.nspname, p.proname, p.pronargs
     FROM pg_extension e
     JOIN pg_depend d ON d.refobjid = e.oid AND d.refclassid = 'pg_extension'::regclass
                     AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
     JOIN pg_proc p ON p.oid = d.objid
     JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE e.extname IN ('hypopg', 'dblink')
      AND p.proname IN ('hypopg_reset', 'hypopg_unhide_all_indexes', 'dblink_get_connections', 'dblink_disconnect')
      AND has_schema_privilege(n.oid, 'USAGE') AND has_function_privilege(p.oid, 'EXECUTE'))
 SELECT
   (SELECT string_agg(format(', %I.%I()', nspname, proname), '' ORDER BY proname)
      FROM callable WHERE extname = 'hypopg' AND pronargs = 0),
   (SELECT format(', (SELECT count(%1$I.dblink_disconnect(c)) FROM unnest(%1$I.dblink_get_connections()) AS c)', min(nspname))
      FROM callable WHERE extname = 'dblink'
    HAVING bool_or(proname = 'dblink_get_connections') AND bool_or(proname = 'dblink_disconnect' AND pronargs = 1)),
   (SELECT format(' DO $mcp$BEGIN PERFORM %I.dblink_disconnect(); EXCEPTION WHEN OTHERS THEN END$mcp$;', min(nspname))
      FROM callable WHERE extname = 'dblink' AND proname = 'dblink_disconnect' AND pronargs = 0 HAVING count(*) > 0)";

impl SessionCleanup {
    fn with_extensions(extra_select: &str, extra_statements: &str) -> SessionCleanup {
        let select = format!(
            "SELECT pg_advisory_unlock_all(), count(*){extra_select} FROM pg_prepared_statement() p WHERE p.from_sql;{extra_statements}"
        );
        SessionCleanup {
            inside: format!("{select} ROLLBACK"),
            after: format!("ROLLBACK; {select}"),
            inside_dropping_statements: format!("DEALLOCATE ALL; {select} ROLLBACK"),
            after_dropping_statements: format!("ROLLBACK; DEALLOCATE ALL; {select}"),
        }
    }

    fn inside(&self, drop_statements: bool) -> &str {
        if drop_statements {
            &self.inside_dropping_statements
        } else {
            &self.inside
        }
    }

    fn after(&self, drop_statements: bool) -> &str {
        if drop_statements {
            &self.after_dropping_statements
        } else {
            &self.after
        }
    }

    /// The cleanup for a new connection. If the extension check itself fails, the connection
    /// gets the built-in cleanup only, and the failure is logged.
    fn for_connection(client: &mut postgres::Client) -> SessionCleanup {
        let (mut select, mut statements) = (String::new(), String::new());
        match client.simple_query(CLEANUP_EXTENSIONS_SQL) {
            Ok(messages) => {
                for message in messages {
                    if let postgres::SimpleQueryMessage::Row(row) = message {
                        select.push_str(row.get(0).unwrap_or_default());
                        select.push_str(row.get(1).unwrap_or_default());
                        statements.push_str(row.get(2).unwrap_or_default());
                    }
                }
            }
            Err(e) => log_event(
                "warn",
                "could not check for hypopg/dblink; cleaning up advisory locks and prepared statements only",
                &[("error", &describe_db_error(&e))],
            ),
        }
        SessionCleanup::with_extensions(&select, &statements)
    }
}

/// Ends a unit of work with ROLLBACK and clears what survives it. After a successful request the
/// cleanup runs inside the transaction (cheaper than opening another one after ROLLBACK); after
/// a failed one, or if that fails (the transaction was aborted), it runs after ROLLBACK.
/// The driver's protocol-level statements (`from_sql = false`) are left alone.
/// With `drop_driver_statements` every prepared statement of the server session goes too (see
/// `Pool::read_only`: behind a pooler nothing of this connection's driver may stay behind).
fn end_transaction(
    client: &mut postgres::Client,
    cleanup: &SessionCleanup,
    work_failed: bool,
    drop_driver_statements: bool,
) -> Result<(), DbError> {
    use postgres::SimpleQueryMessage::Row;
    let inside = if work_failed {
        None
    } else {
        client
            .simple_query(cleanup.inside(drop_driver_statements))
            .ok()
    };
    let messages = match inside {
        Some(messages) => messages,
        None => client.simple_query(cleanup.after(drop_driver_statements))?,
    };
    let leftover = messages
        .iter()
        .any(|m| matches!(m, Row(row) if row.get(1).is_some_and(|n| n != "0")));
    if !leftover {
        return Ok(());
    }
    for message in client.simple_query("SELECT name FROM pg_prepared_statements WHERE from_sql")? {
        if let Row(row) = message {
            if let Some(name) = row.get(0) {
                client.batch_execute(&format!("DEALLOCATE {}", quote_ident(name)))?;
            }
        }
    }
    Ok(())
}

/// The driver's own named statement (`s<N>`) missing from, or already present in, the server
/// session: what a transaction pooler does to statements cached across transactions.
fn is_stale_driver_statement(error: &DbError) -> bool {
    let Some(db) = error.as_db_error() else {
        return false;
    };
    if !matches!(db.code().code(), "26000" | "42P05") {
        return false;
    }
    let Some(name) = db
        .message()
        .strip_prefix("prepared statement \"")
        .and_then(|rest| rest.split('"').next())
    else {
        return false;
    };
    name.len() > 1 && name.starts_with('s') && name[1..].bytes().all(|b| b.is_ascii_digit())
}

/// What beginning a unit of work found.
enum Begun {
    /// Ready for work; what the BEGIN round trip reported for provenance.
    Ready { read_at: String, database: String },
    /// The connection's driver cache refers to statements of another server session.
    StaleDriverCache,
}

/// A genuine loss of the connection, as opposed to an error the session survives (57014
/// timeout, syntax, permissions): closed socket, I/O error, SQLSTATE class 08, 57P01–57P03
/// (admin/crash shutdown, cannot connect now), or any FATAL/PANIC.
fn is_disconnect(error: &DbError) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08")
            || matches!(code, "57P01" | "57P02" | "57P03")
            || matches!(db.severity(), "FATAL" | "PANIC");
    }
    // The driver's own wording for I/O failures and timeouts (its error kinds are private);
    // encoding errors such as a NUL byte are not disconnects.
    let text = error.to_string();
    text.starts_with("error communicating with the server")
        || text.starts_with("timeout waiting for server")
}

fn describe_db_error(error: &DbError) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = error.to_string();
            if let Some(source) = std::error::Error::source(error) {
                let _ = write!(text, ": {source}");
            }
            text
        }
    }
}

/// Cancels backend queries nobody is waiting for: the HTTP client hung up, the statement ran
/// past its timeout plus a margin (a backstop: PostgreSQL's own statement_timeout normally
/// fires first), or the server is shutting down after its grace period. Without it a
/// cancelled question would keep a backend busy until statement_timeout.
#[derive(Default)]
struct Watchdog {
    in_flight: Mutex<BTreeMap<u64, WatchedQuery>>,
    next_id: AtomicU64,
}

struct WatchedQuery {
    cancel: postgres::CancelToken,
    deadline: Instant,
    /// The HTTP connection the answer goes back to (-1: none).
    peer_fd: i32,
    /// The backend running it and its transaction's start (epoch seconds as PostgreSQL prints
    /// them): together they name this one transaction, for a cancel in SQL.
    backend: Option<(i32, String)>,
}

thread_local! {
    /// The socket of the HTTP connection this thread serves, so the watchdog can notice the
    /// client leaving while this thread is blocked on the database.
    static PEER_FD: std::cell::Cell<i32> = const { std::cell::Cell::new(-1) };
}

/// Removes its query from the watchdog when the work ends, however it ends.
struct WatchGuard<'a> {
    watchdog: &'a Watchdog,
    id: u64,
}

impl Drop for WatchGuard<'_> {
    fn drop(&mut self) {
        lock(&self.watchdog.in_flight).remove(&self.id);
    }
}

impl WatchGuard<'_> {
    /// Names the transaction once it has begun (see `Pool::cancel`).
    fn identify(&self, backend: Option<(i32, String)>) {
        if let Some(query) = lock(&self.watchdog.in_flight).get_mut(&self.id) {
            query.backend = backend;
        }
    }
}

impl Watchdog {
    fn watch(&self, client: &postgres::Client, limit: Duration) -> WatchGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let query = WatchedQuery {
            cancel: client.cancel_token(),
            deadline: Instant::now() + limit,
            peer_fd: PEER_FD.with(|fd| fd.get()),
            backend: None,
        };
        lock(&self.in_flight).insert(id, query);
        WatchGuard { watchdog: self, id }
    }

    /// Background loop: four times a second, cancel what is overdue or orphaned.
    fn run(&self, pool: &Pool) {
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let now = Instant::now();
            // While draining, connections' read sides are shut down on purpose: that is not a
            // client leaving, and the answers in progress must still be delivered.
            let draining = SHUTDOWN_REQUESTED.load(Ordering::SeqCst);
            type Doomed = (u64, WatchedCancel, &'static str);
            let doomed: Vec<Doomed> = lock(&self.in_flight)
                .iter()
                .filter_map(|(id, q)| {
                    let why = if now > q.deadline {
                        "past its deadline"
                    } else if !draining && peer_has_closed(q.peer_fd) {
                        "client disconnected"
                    } else {
                        return None;
                    };
                    Some((*id, (q.cancel.clone(), q.backend.clone()), why))
                })
                .collect();
            for (id, cancel, why) in doomed {
                lock(&self.in_flight).remove(&id);
                log_event("warn", "cancelling a backend query", &[("why", why)]);
                pool.cancel(&cancel);
            }
        }
    }

    fn cancel_all(&self, pool: &Pool) {
        let doomed: Vec<WatchedCancel> = lock(&self.in_flight)
            .values()
            .map(|q| (q.cancel.clone(), q.backend.clone()))
            .collect();
        for cancel in &doomed {
            pool.cancel(cancel);
        }
    }
}

/// What it takes to cancel one watched query.
type WatchedCancel = (postgres::CancelToken, Option<(i32, String)>);

impl Pool {
    /// Cancels a running query: a cancel request over the connections' own TLS settings, and
    /// behind a pooler also `pg_cancel_backend` for that exact transaction, because PgBouncer
    /// (1.18 at least) drops a cancel request whose client hangs up at once, as the driver's does.
    fn cancel(&self, (token, backend): &WatchedCancel) {
        let _ = token.cancel_query(self.database.cancel_connector());
        let Some((pid, started)) = backend.as_ref().filter(|_| self.behind_pooler()) else {
            return;
        };
        let sql = "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
                   WHERE pid = $1 AND extract(epoch FROM xact_start)::text = $2";
        let result = self.database.connect().and_then(|(mut client, _)| {
            client
                .query_typed(
                    sql,
                    &[
                        (pid, postgres::types::Type::INT4),
                        (started, postgres::types::Type::TEXT),
                    ],
                )
                .map_err(|e| DbDown::new("other", describe_db_error(&e)))
        });
        if let Err(down) = result {
            log_event(
                "warn",
                "could not cancel the query in SQL",
                &[("error", &down.message)],
            );
        }
    }
}

/// True when the peer of socket `fd` has closed its side (a zero-byte peek that does not block).
fn peer_has_closed(fd: i32) -> bool {
    const MSG_PEEK: i32 = 0x02;
    const MSG_DONTWAIT: i32 = 0x40;
    extern "C" {
        fn recv(fd: i32, buf: *mut u8, len: usize, flags: i32) -> isize;
    }
    if fd < 0 {
        return false;
    }
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a local buffer on a socket this process owns; MSG_DONTWAIT
    // keeps it from blocking and MSG_PEEK from consuming anything the serving thread will read.
    let received = unsafe { recv(fd, &mut byte, 1, MSG_PEEK | MSG_DONTWAIT) };
    received == 0
}

/// One read-only transaction on one connection, and what its BEGIN reported.
struct Session<'c> {
    client: &'c mut postgres::Client,
    /// The statement's columns had types the driver looked up (enums, domains, extension types),
    /// which leaves its type-lookup statements prepared in the server session.
    custom_types: bool,
    /// The transaction's timestamp (now()) in UTC, ISO 8601: the data is as of then.
    read_at: String,
    /// current_database().
    database: String,
}

/// How `query` and `sample_table` lay out rows (their `format` argument).
#[derive(Debug, Clone, Copy, PartialEq)]
enum ResultFormat {
    /// One JSON object per row (the default, and the seed's shape).
    Objects,
    /// Column names once (in `columns`), each row a JSON array.
    Arrays,
    /// The text block is CSV; structuredContent carries the rows as arrays.
    Csv,
    /// The text block is a Markdown table; structuredContent carries the rows as arrays.
    Markdown,
}

impl ResultFormat {
    const NAMES: &'static [&'static str] = &["objects", "arrays", "csv", "markdown"];

    fn from_argument(name: Option<&str>) -> ResultFormat {
        match name {
            Some("arrays") => ResultFormat::Arrays,
            Some("csv") => ResultFormat::Csv,
            Some("markdown") => ResultFormat::Markdown,
            _ => ResultFormat::Objects,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ResultFormat::Objects => "objects",
            ResultFormat::Arrays => "arrays",
            ResultFormat::Csv => "csv",
            ResultFormat::Markdown => "markdown",
        }
    }

    /// Whether the model reads a text rendering (CSV, Markdown) rather than the JSON.
    fn is_text(self) -> bool {
        matches!(self, ResultFormat::Csv | ResultFormat::Markdown)
    }
}

/// What an analyst's statement may return and cost.
struct AnswerLimits {
    /// Most rows (an outer LIMIT: rows past it are never computed).
    cap: u64,
    /// Byte budget of the formatted rows.
    budget: u64,
    /// MCP_MAX_PLAN_COST: refuse before running when the planner estimates more.
    max_plan_cost: Option<f64>,
    format: ResultFormat,
}

/// A query's answer: column metadata, the rows in the requested format (copied once from the
/// wire into their buffers), and where and when they were read.
struct QueryResult {
    columns: Vec<(String, String)>,
    format: ResultFormat,
    /// Objects and arrays: the rows, joined with commas. CSV and Markdown: the same rows as
    /// JSON arrays, for structuredContent.
    rows_json: String,
    /// CSV and Markdown: the text the model reads.
    text: String,
    row_count: u64,
    truncated: Option<&'static str>,
    read_at: String,
    database: String,
    /// Time spent waiting for PostgreSQL: describe, estimate, execute, fetch.
    db_time: Duration,
}

impl QueryResult {
    /// The answer as structuredContent (and, for CSV and Markdown, the text blocks).
    ///
    /// Objects: `{row_count, truncated, truncated_reason, columns, rows:[{…}], provenance}` — the
    /// seed's shape, with provenance added at the end. Arrays: the same with `rows:[[…]]` and
    /// `format`. CSV and Markdown: structuredContent is the arrays shape (with `format`), the
    /// first text block is the CSV or Markdown, the second the answer without its rows.
    fn into_output(self, sql: &str, server_label: Option<&str>) -> ToolOutput {
        let columns: Vec<Value> = self
            .columns
            .iter()
            .map(|(name, ty)| json!({ "name": name, "type": ty }))
            .collect();
        let reason = self
            .truncated
            .map_or("null".to_string(), |r| format!("\"{r}\""));
        let provenance = json!({
            "database": self.database,
            "server_label": server_label,
            "read_at": self.read_at,
        })
        .to_string();
        // db_ms is written by hand: two decimals, always a JSON number.
        let provenance = format!(
            "{},\"db_ms\":{:.2}}}",
            provenance.trim_end_matches('}'),
            self.db_time.as_secs_f64() * 1000.0
        );
        let head = format!(
            r#"{{"row_count":{},"truncated":{},"truncated_reason":{reason},"columns":{}"#,
            self.row_count,
            self.truncated.is_some(),
            Value::Array(columns),
        );
        let format = match self.format {
            ResultFormat::Objects => String::new(),
            other => format!(r#","format":"{}""#, other.name()),
        };
        let mut json = String::with_capacity(self.rows_json.len() + head.len() + 256);
        let _ = write!(
            json,
            r#"{head},"rows":[{}]{format},"provenance":{provenance}}}"#,
            self.rows_json
        );
        let text_blocks = if self.format.is_text() {
            vec![
                self.text,
                format!(r#"{head}{format},"provenance":{provenance}}}"#),
            ]
        } else {
            Vec::new()
        };
        ToolOutput {
            json,
            text_blocks,
            rows: self.row_count,
            truncated: self.truncated,
            sql: Some(sql.to_string()),
        }
    }
}

impl ToolOutput {
    /// Adds `"key": value` to the answer's JSON and to the text blocks that carry it (a CSV or
    /// Markdown answer's second block).
    fn with_field(mut self, key: &str, value: &Value) -> ToolOutput {
        let field = format!(",{}:{value}}}", Value::String(key.into()));
        for json in std::iter::once(&mut self.json).chain(
            self.text_blocks
                .iter_mut()
                .filter(|block| block.starts_with('{')),
        ) {
            if json.ends_with('}') {
                json.pop();
                json.push_str(&field);
            }
        }
        self
    }
}

/// Drops the whitespace outside strings that PostgreSQL's json functions pad with, in one pass
/// and without parsing: the same document (keys in order), fewer tokens for the model.
fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        }
        out.push(c);
    }
    out
}

impl Session<'_> {
    /// Runs an introspection query whose single text column is a JSON document; None when it
    /// returned no row (the schema or table is not there or not readable).
    fn json_document(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Option<String>, DbError> {
        let Some(row) = self.client.query_opt(sql, params)? else {
            return Ok(None);
        };
        let document: Option<&str> = row.try_get(0)?;
        Ok(document.map(compact_json))
    }

    /// The single text value of a query that answers one row at most (None: no row, or NULL).
    fn text_value(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Option<String>, DbError> {
        match self.client.query_opt(sql, params)? {
            Some(row) => row.try_get(0),
            None => Ok(None),
        }
    }

    /// Runs the analyst's statement. It is described first (one Parse, extended protocol) for
    /// the column names and types; then PostgreSQL serialises each row with row_to_json inside
    /// an outer LIMIT (so rows past the cap are never computed), PostGIS values made readable
    /// (readable_value_sql), and withholds any row far larger than the byte budget (so a huge
    /// value never reaches our memory). Each row is formatted as it arrives and the budget is
    /// checked against the formatted size. With MCP_MAX_PLAN_COST, an EXPLAIN of exactly that
    /// statement comes first, and a statement estimated above it is not run.
    fn run_statement(
        &mut self,
        statement: &str,
        limits: &AnswerLimits,
    ) -> Result<Result<QueryResult, ToolFailure>, DbError> {
        let mut db_time = Duration::ZERO;
        let started = Instant::now();
        let described = self.client.prepare(statement)?;
        self.custom_types |= described
            .columns()
            .iter()
            .any(|c| postgres::types::Type::from_oid(c.type_().oid()).is_none());
        db_time += started.elapsed();
        let columns: Vec<(String, String)> = described
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), display_type_name(c.type_().name())))
            .collect();
        let keys = unique_column_keys(&columns);
        let mut readable = Vec::with_capacity(keys.len());
        let mut json_documents = Vec::with_capacity(keys.len());
        for (column, key) in described.columns().iter().zip(&keys) {
            let base = base_type(column.type_());
            let value = format!("mcp_raw.{}", quote_ident(key));
            readable.push(readable_value_sql(&value, base.schema(), base.name()));
            json_documents.push(matches!(base.name(), "json" | "jsonb"));
        }
        drop(described);
        let row_bound = match limits.format {
            ResultFormat::Objects => limits.budget,
            // Keys, quotes and JSON escapes make an object row up to about six times its
            // formatted size; the exact budget is checked on the formatted row below.
            _ => {
                limits.budget.saturating_mul(6)
                    + keys.iter().map(|k| 2 * k.len() as u64 + 3).sum::<u64>()
            }
        };
        let wrapped = wrapped_statement(statement, &keys, &readable, limits.cap, row_bound);
        if let Some(limit) = limits.max_plan_cost {
            let started = Instant::now();
            let estimate = self.estimated_cost(&wrapped)?;
            db_time += started.elapsed();
            if estimate.is_none_or(|cost| cost > limit) {
                return Ok(Err(ToolFailure::TooCostly { estimate, limit }));
            }
        }
        let mut sink = RowSink::new(limits.format, &keys, json_documents, limits.budget);
        let mut row_count = 0u64;
        let mut truncated = None;
        let no_params: [(&str, postgres::types::Type); 0] = [];
        let started = Instant::now();
        let mut stream = self.client.query_typed_raw(&wrapped, no_params)?;
        db_time += started.elapsed();
        use postgres::fallible_iterator::FallibleIterator;
        loop {
            let started = Instant::now();
            let next = stream.next()?;
            db_time += started.elapsed();
            let Some(row) = next else {
                break;
            };
            if row_count >= limits.cap {
                truncated = Some("max_rows");
                break;
            }
            match row.try_get::<_, Option<&str>>(0)? {
                Some(json) if sink.push(json) => row_count += 1,
                _ => {
                    truncated = Some("max_bytes");
                    break;
                }
            }
        }
        let columns = keys
            .into_iter()
            .zip(columns)
            .map(|(key, (_, ty))| (key, ty))
            .collect();
        Ok(Ok(QueryResult {
            columns,
            format: limits.format,
            rows_json: sink.rows_json,
            text: sink.text,
            row_count,
            truncated,
            read_at: self.read_at.clone(),
            database: self.database.clone(),
            db_time,
        }))
    }

    /// The planner's total cost for `statement` (EXPLAIN, nothing runs); None if the plan could
    /// not be read.
    fn estimated_cost(&mut self, statement: &str) -> Result<Option<f64>, DbError> {
        let no_params: [(&str, postgres::types::Type); 0] = [];
        let explain = format!("EXPLAIN (FORMAT JSON) {statement}");
        let mut plan = String::new();
        use postgres::fallible_iterator::FallibleIterator;
        let mut rows = self.client.query_typed_raw(&explain, no_params)?;
        while let Some(row) = rows.next()? {
            plan.push_str(row.try_get::<_, AnyText>(0)?.0);
        }
        let plan: Value = serde_json::from_str(&plan).unwrap_or(Value::Null);
        Ok(plan[0]["Plan"]["Total Cost"].as_f64())
    }
}

/// The text of a value of any type sent as text or in a text-like binary form (json is its
/// text on the wire): for reading EXPLAIN's json column without serde support in the driver.
struct AnyText<'a>(&'a str);

impl<'a> postgres::types::FromSql<'a> for AnyText<'a> {
    fn from_sql(
        _: &postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(AnyText(std::str::from_utf8(raw)?))
    }
    fn accepts(ty: &postgres::types::Type) -> bool {
        matches!(
            *ty,
            postgres::types::Type::JSON | postgres::types::Type::TEXT
        )
    }
}

/// A domain's base type (a domain over geography renders like geography).
fn base_type(ty: &postgres::types::Type) -> &postgres::types::Type {
    match ty.kind() {
        postgres::types::Kind::Domain(inner) => base_type(inner),
        _ => ty,
    }
}

/// The statement as the server runs it: each row serialised by row_to_json (columns renamed to
/// their unique keys, readable expressions where a column needs one) under the row cap, and
/// NULL instead of any row longer than `row_bound` bytes. With no readable column this is
/// exactly the seed's wrapper (bench/run.sh replays it with pgbench).
fn wrapped_statement(
    statement: &str,
    keys: &[String],
    readable: &[Option<String>],
    cap: u64,
    row_bound: u64,
) -> String {
    let aliases = if keys.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = keys.iter().map(|k| quote_ident(k)).collect();
        format!("({})", quoted.join(", "))
    };
    let limit = cap + 1;
    let rows = if readable.iter().all(Option::is_none) {
        format!(
            "SELECT row_to_json(mcp_row.*)::text AS j FROM (\n{statement}\n) AS mcp_row{aliases} LIMIT {limit}"
        )
    } else {
        let projection: Vec<String> = keys
            .iter()
            .zip(readable)
            .map(|(key, expression)| match expression {
                Some(expression) => format!("{expression} AS {}", quote_ident(key)),
                None => format!("mcp_raw.{}", quote_ident(key)),
            })
            .collect();
        format!(
            "SELECT row_to_json(mcp_row.*)::text AS j FROM (SELECT {} FROM (\n{statement}\n) AS mcp_raw{aliases} LIMIT {limit}) AS mcp_row",
            projection.join(", ")
        )
    };
    format!("SELECT CASE WHEN octet_length(j) <= {row_bound} THEN j END FROM ({rows}) AS capped")
}

/// A readable, exact SQL expression for `value` (an SQL expression) of type
/// `type_schema.type_name` (pg_type.typname; `_name` is an array of `name`), or None when
/// PostgreSQL's own JSON rendering of the type is already readable — every type but PostGIS's:
///   geometry, geography → GeoJSON with every digit, or extended WKT with every digit where
///     GeoJSON cannot say it exactly (M coordinates, curves, TIN, triangles, polyhedral surfaces);
///   box2d, box3d → {"xmin":…,"ymin":…,["zmin":…,]"xmax":…,"ymax":…[,"zmax":…]}, exact;
///   raster → its metadata (ST_MetaData: corner, size, scale, skew, SRID, bands), not pixels;
///   one-dimensional arrays of these → JSON arrays of the same.
/// The PostGIS functions are called in the type's own schema. Any tool that shows values
/// (query, sample_table, profile_columns) renders them through here.
fn readable_value_sql(value: &str, type_schema: &str, type_name: &str) -> Option<String> {
    let schema = quote_ident(type_schema);
    if let Some(element) = type_name.strip_prefix('_') {
        let each = readable_value_sql("mcp_e.v", type_schema, element)?;
        return Some(format!(
            "CASE WHEN {value} IS NULL THEN NULL WHEN array_ndims({value}) > 1 THEN to_json({value}) \
             ELSE array_to_json(ARRAY(SELECT {each} FROM unnest({value}) WITH ORDINALITY AS mcp_e(v, n) ORDER BY mcp_e.n)) END"
        ));
    }
    let coordinates = |names: &[&str]| {
        let keys: Vec<String> = names.iter().map(|n| format!("\"{n}\":%s")).collect();
        let values: Vec<String> = names
            .iter()
            .map(|n| format!("to_json({schema}.st_{n}({value}))"))
            .collect();
        format!(
            "CASE WHEN {value} IS NULL THEN NULL ELSE format('{{{}}}', {})::json END",
            keys.join(","),
            values.join(", ")
        )
    };
    match type_name {
        "geometry" => Some(geometry_json_sql(value, &schema)),
        "geography" => Some(geometry_json_sql(
            &format!("{value}::{schema}.geometry"),
            &schema,
        )),
        "box2d" => Some(coordinates(&["xmin", "ymin", "xmax", "ymax"])),
        "box3d" => Some(coordinates(&["xmin", "ymin", "zmin", "xmax", "ymax", "zmax"])),
        "raster" => Some(format!(
            "CASE WHEN {value} IS NULL THEN NULL ELSE row_to_json({schema}.st_metadata({value})) END"
        )),
        _ => None,
    }
}

/// GeoJSON where GeoJSON says the geometry exactly, extended WKT otherwise: GeoJSON has no M
/// coordinate and no curves, and PostGIS turns TIN and triangles into polygons and refuses
/// polyhedral surfaces. The GeoJSON is PostGIS's own, as its json cast (which row_to_json uses)
/// writes it — the same `crs` member, when spatial_ref_sys knows the SRID — but with every digit
/// of each coordinate (the cast rounds to 15 decimals).
fn geometry_json_sql(value: &str, schema: &str) -> String {
    const GEOJSON_TYPES: &str =
        "'POINT', 'LINESTRING', 'POLYGON', 'MULTIPOINT', 'MULTILINESTRING', 'MULTIPOLYGON'";
    let geojson = format!(
        "{schema}.st_asgeojson({value}, 20, CASE WHEN EXISTS (SELECT FROM {schema}.spatial_ref_sys AS mcp_s \
         WHERE mcp_s.srid = {schema}.st_srid({value})) THEN 2 ELSE 0 END)::json"
    );
    format!(
        "CASE WHEN {value} IS NULL THEN NULL \
         WHEN {schema}.st_zmflag({value}) IN (1, 3) OR {schema}.st_hasarc({value}) THEN to_json({schema}.st_asewkt({value}, 20)) \
         WHEN {schema}.geometrytype({value}) IN ({GEOJSON_TYPES}) THEN {geojson} \
         WHEN {schema}.geometrytype({value}) = 'GEOMETRYCOLLECTION' AND NOT EXISTS (SELECT FROM {schema}.st_dump({value}) AS mcp_d \
           WHERE {schema}.geometrytype(mcp_d.geom) NOT IN ({GEOJSON_TYPES})) THEN {geojson} \
         ELSE to_json({schema}.st_asewkt({value}, 20)) END"
    )
}

/// Builds an answer's rows in its format while they stream in, within the byte budget.
struct RowSink {
    format: ResultFormat,
    /// Per column: its values are JSON documents (json, jsonb), shown as JSON in CSV/Markdown.
    json_documents: Vec<bool>,
    budget: u64,
    rows_json: String,
    text: String,
}

impl RowSink {
    fn new(
        format: ResultFormat,
        keys: &[String],
        json_documents: Vec<bool>,
        budget: u64,
    ) -> RowSink {
        let mut text = String::new();
        match format {
            ResultFormat::Csv => {
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    push_csv_field(&mut text, key);
                }
                text.push('\n');
            }
            ResultFormat::Markdown => {
                text.push('|');
                for key in keys {
                    push_markdown_cell(&mut text, Some(key));
                    text.push('|');
                }
                text.push_str("\n|");
                for _ in keys {
                    text.push_str("---|");
                }
                text.push('\n');
            }
            ResultFormat::Objects | ResultFormat::Arrays => {}
        }
        RowSink {
            format,
            json_documents,
            budget,
            rows_json: String::new(),
            text,
        }
    }

    /// Adds one row (a JSON object from row_to_json); false, and nothing added, if the
    /// formatted answer would exceed the budget.
    fn push(&mut self, object: &str) -> bool {
        let (json_mark, text_mark) = (self.rows_json.len(), self.text.len());
        if self.format == ResultFormat::Objects {
            // The seed's rule, kept exactly: earlier rows and their commas plus this row.
            if (json_mark + object.len()) as u64 > self.budget {
                return false;
            }
            if json_mark > 0 {
                self.rows_json.push(',');
            }
            self.rows_json.push_str(object);
            return true;
        }
        if json_mark > 0 {
            self.rows_json.push(',');
        }
        self.push_formatted(object);
        let fits = if self.format.is_text() {
            // The structured copy is bounded too: JSON spells NULL as null and control characters
            // as \u00XX, so it is at most a few times the text; past 8× the answer is cut.
            self.text.len() as u64 <= self.budget
                && self.rows_json.len() as u64 <= self.budget.saturating_mul(8)
        } else {
            self.rows_json.len() as u64 <= self.budget
        };
        if fits {
            return true;
        }
        self.rows_json.truncate(json_mark);
        self.text.truncate(text_mark);
        false
    }

    fn push_formatted(&mut self, object: &str) {
        let (format, json_documents) = (self.format, &self.json_documents);
        let (rows_json, text) = (&mut self.rows_json, &mut self.text);
        rows_json.push('[');
        if format == ResultFormat::Markdown {
            text.push('|');
        }
        let mut column = 0;
        for_each_object_value(object, |value| {
            if column > 0 {
                rows_json.push(',');
                if format == ResultFormat::Csv {
                    text.push(',');
                }
            }
            rows_json.push_str(value);
            let json_document = json_documents.get(column).copied().unwrap_or(false);
            let cell = cell_text(value, json_document);
            match format {
                ResultFormat::Csv => {
                    if let Some(cell) = cell {
                        push_csv_field(text, &cell);
                    }
                }
                ResultFormat::Markdown => {
                    push_markdown_cell(text, cell.as_deref());
                    text.push('|');
                }
                ResultFormat::Objects | ResultFormat::Arrays => {}
            }
            column += 1;
        });
        rows_json.push(']');
        if format.is_text() {
            text.push('\n');
        }
    }
}

/// Calls `each` with every value of a JSON object as row_to_json writes it, keys skipped, in
/// order. row_to_json adds no whitespace of its own; a value may be any JSON (json columns keep
/// their text as written). Total: malformed input ends the walk, it never panics.
fn for_each_object_value<'a>(object: &'a str, mut each: impl FnMut(&'a str)) {
    let bytes = object.as_bytes();
    let mut i = 1;
    loop {
        i = skip_json_whitespace(bytes, i);
        match bytes.get(i) {
            Some(b'"') => {}
            Some(b',') => {
                i += 1;
                continue;
            }
            _ => return,
        }
        i = skip_json_whitespace(bytes, skip_json_string(bytes, i));
        if bytes.get(i) != Some(&b':') {
            return;
        }
        let start = skip_json_whitespace(bytes, i + 1);
        i = skip_json_value(bytes, start);
        match object.get(start..i) {
            Some(value) => each(value.trim_end()),
            None => return,
        }
    }
}

fn skip_json_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| b" \t\r\n".contains(b)) {
        i += 1;
    }
    i
}

/// From the opening quote at `i` to just past the closing one.
fn skip_json_string(bytes: &[u8], mut i: usize) -> usize {
    i += 1;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// From the first byte of a JSON value at `i` to just past its end.
fn skip_json_value(bytes: &[u8], mut i: usize) -> usize {
    match bytes.get(i) {
        Some(b'"') => skip_json_string(bytes, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            while let Some(&byte) = bytes.get(i) {
                match byte {
                    b'"' => {
                        i = skip_json_string(bytes, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            bytes.len()
        }
        _ => {
            while bytes.get(i).is_some_and(|b| !b",}] \t\r\n".contains(b)) {
                i += 1;
            }
            i
        }
    }
}

/// A value as a CSV or Markdown cell shows it: None for NULL; a JSON string's own text; any
/// other JSON (numbers, booleans, arrays, objects, and every value of a json or jsonb column)
/// as its JSON text. The column types (in `columns`) say how to read a cell back.
fn cell_text(value: &str, json_document: bool) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    if value == "null" {
        return None;
    }
    let quoted = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
    if json_document || !quoted {
        return Some(Cow::Borrowed(value));
    }
    let inner = &value[1..value.len() - 1];
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    Some(serde_json::from_str::<String>(value).map_or(Cow::Borrowed(inner), Cow::Owned))
}

/// RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled; the
/// empty string is `""` so that it differs from NULL (an empty field).
fn push_csv_field(out: &mut String, text: &str) {
    if !text.is_empty() && !text.contains([',', '"', '\n', '\r']) {
        out.push_str(text);
        return;
    }
    out.push('"');
    let mut rest = text;
    while let Some(at) = rest.find('"') {
        out.push_str(&rest[..=at]);
        out.push('"');
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// A Markdown table cell, reversible: NULL is an empty cell, the empty string `""`; `\`, `|`,
/// line feed and carriage return are written `\\`, `\|`, `\n`, `\r`, and a leading `"` as `\"`.
fn push_markdown_cell(out: &mut String, text: Option<&str>) {
    let Some(text) = text else {
        return;
    };
    if text.is_empty() {
        out.push_str("\"\"");
        return;
    }
    let mut run_start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'\\' => "\\\\",
            b'|' => "\\|",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'"' if i == 0 => "\\\"",
            _ => continue,
        };
        out.push_str(&text[run_start..i]);
        out.push_str(escape);
        run_start = i + 1;
    }
    out.push_str(&text[run_start..]);
}

/// `_int4` → `int4[]`: PostgreSQL's internal array names are not what an analyst reads.
fn display_type_name(name: &str) -> String {
    match name.strip_prefix('_') {
        Some(element) => format!("{element}[]"),
        None => name.to_string(),
    }
}

/// Row objects need distinct keys: a repeated column name gets `_2`, `_3`, … so no value is lost.
fn unique_column_keys(columns: &[(String, String)]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::with_capacity(columns.len());
    for (name, _) in columns {
        let mut key = name.clone();
        let mut n = 2;
        while keys.contains(&key)
            || (key != *name && columns.iter().any(|(other, _)| *other == key))
        {
            key = format!("{name}_{n}");
            n += 1;
        }
        keys.push(key);
    }
    keys
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Start-up (or first-connect) inspection of the role. Refuses a role that could write or act
/// outside the database unless MCP_ALLOW_PRIVILEGED_ROLE=1.
const ROLE_CHECK_SQL: &str = "SELECT r.rolname::text,
   array_remove(ARRAY[
     CASE WHEN r.rolsuper THEN 'SUPERUSER' END, CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
     CASE WHEN r.rolcreatedb THEN 'CREATEDB' END, CASE WHEN r.rolreplication THEN 'REPLICATION' END,
     CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END], NULL)
   || ARRAY(SELECT 'member of ' || g.rolname FROM pg_roles g
            WHERE g.rolname IN ('pg_write_server_files', 'pg_read_server_files', 'pg_execute_server_program',
                                'pg_signal_backend', 'pg_write_all_data')
              AND pg_has_role(r.oid, g.oid, 'USAGE'))
   || ARRAY(SELECT 'can write ' || format('%I.%I', n.nspname, c.relname) FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
              AND has_schema_privilege(n.oid, 'USAGE')
              AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
            ORDER BY 1 LIMIT 5)
 FROM pg_roles r WHERE r.rolname = current_user";

impl Pool {
    /// Runs the role check on the first connection that succeeds. A refused role ends the
    /// process: serving with it would break the server's one promise.
    fn check_role(&self, client: &mut postgres::Client) {
        // Unnamed statement, one round trip: safe behind a transaction pooler.
        let row = match client.query_typed(ROLE_CHECK_SQL, &[]) {
            Ok(rows) => match rows.into_iter().next() {
                Some(row) => row,
                None => return, // the role is not in pg_roles: nothing to judge yet
            },
            Err(e) => {
                log_event(
                    "warn",
                    "role check could not run; will retry on next connect",
                    &[("error", &describe_db_error(&e))],
                );
                return;
            }
        };
        if self.role_checked.swap(true, Ordering::SeqCst) {
            return;
        }
        let role: String = row.try_get(0).unwrap_or_default();
        let problems: Vec<String> = row.try_get(1).unwrap_or_default();
        let list = problems.join(", ");
        let mut fields = vec![("role", role.as_str())];
        if !self.name.is_empty() {
            fields.push(("database", &self.name));
        }
        if problems.is_empty() {
            log_event("info", "database role checked: read-only", &fields);
        } else if self.allow_privileged_role {
            fields.push(("privileges", &list));
            log_event("warn", "!!! MCP_ALLOW_PRIVILEGED_ROLE=1: serving with a role that can write or act outside the database !!!", &fields);
        } else {
            fields.push(("privileges", &list));
            log_event("error", "refusing to serve: the database role is not read-only (apply role.sql, or set MCP_ALLOW_PRIVILEGED_ROLE=1 to override)", &fields);
            std::process::exit(3);
        }
        self.check_mapped_roles(client);
    }
}

// ── Each analyst's own database role ─────────────────────────────────────────────────────────
// With MCP_ANALYST_ROLES, every unit of work runs `SET LOCAL ROLE <the analyst's role>` first,
// inside its read-only transaction (so it ends with it: PgBouncer transaction pooling stays
// safe), and grants, column privileges and row-level security apply per person. An analyst with
// no role is refused unless MCP_ANALYST_UNMAPPED=base. Each role passes the privilege self-check
// before it serves: explicitly mapped ones with the login role's at first connect, pattern ones
// on first use. The statement cannot switch back for good — the guard refuses SET/RESET ROLE
// and set_config, security-definer functions may not change the role, and the role is read
// again after the work: an answer computed under any other role is withheld.

/// MCP_ANALYST_ROLES: `name=role` entries and/or one pattern with `{name}` in it.
#[derive(Debug, Clone, Default, PartialEq)]
struct AnalystRoles {
    explicit: Vec<(String, String)>,
    pattern: Option<String>,
    /// MCP_ANALYST_UNMAPPED=base: an analyst with no role is served as the login role.
    serve_unmapped_as_base: bool,
}

/// PostgreSQL cuts identifiers at 63 bytes; two long names must never meet in one role.
const MAX_ROLE_NAME_BYTES: usize = 63;

impl AnalystRoles {
    fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<AnalystRoles>, ConfigError> {
        let serve_unmapped_as_base = match get("MCP_ANALYST_UNMAPPED").as_deref() {
            None | Some("refuse") => false,
            Some("base") => true,
            Some(other) => {
                return Err(ConfigError(format!(
                    "MCP_ANALYST_UNMAPPED must be refuse or base, not {other:?}"
                )))
            }
        };
        let Some(list) = get("MCP_ANALYST_ROLES") else {
            return Ok(None);
        };
        let mut roles = AnalystRoles {
            serve_unmapped_as_base,
            ..AnalystRoles::default()
        };
        let bad = |entry: &str, why: &str| {
            ConfigError(format!("MCP_ANALYST_ROLES: entry {entry:?} {why}"))
        };
        for entry in split_list(&list) {
            if let Some((name, role)) = entry.split_once('=') {
                let (name, role) = (name.trim(), role.trim());
                if name.is_empty() || role.is_empty() {
                    return Err(bad(&entry, "needs a name and a role (alice=analyst_alice)"));
                }
                check_role_name(role).map_err(|why| bad(&entry, &why))?;
                if roles.explicit.iter().any(|(known, _)| known == name) {
                    return Err(bad(&entry, "maps an analyst named before"));
                }
                roles.explicit.push((name.to_string(), role.to_string()));
            } else if entry.contains("{name}") {
                if roles.pattern.is_some() {
                    return Err(bad(&entry, "is a second pattern; one is allowed"));
                }
                check_role_name(&entry.replace("{name}", "")).map_err(|why| bad(&entry, &why))?;
                roles.pattern = Some(entry);
            } else {
                return Err(bad(
                    &entry,
                    "is neither name=role nor a pattern such as analyst_{name}",
                ));
            }
        }
        Ok(Some(roles))
    }

    /// The role `caller` works as; None when nothing maps them.
    fn role_for(&self, caller: &str) -> Option<String> {
        let explicit = self.explicit.iter().find(|(name, _)| name == caller);
        match (explicit, &self.pattern) {
            (Some((_, role)), _) => Some(role.clone()),
            (None, Some(pattern)) => Some(pattern.replace("{name}", caller)),
            (None, None) => None,
        }
    }

    /// What an analyst's work runs as: Ok(None) for the login role itself.
    fn resolve(&self, caller: &Caller) -> Result<Option<String>, ToolFailure> {
        match self.role_for(&caller.name) {
            Some(role) if check_role_name(&role).is_ok() => Ok(Some(role)),
            Some(role) => Err(ToolFailure::Forbidden(format!(
                "analyst {} maps to database role {role:?}, which is not a usable role name (at most {MAX_ROLE_NAME_BYTES} bytes); map them explicitly in MCP_ANALYST_ROLES",
                caller.name
            ))),
            None if self.serve_unmapped_as_base => Ok(None),
            None => Err(ToolFailure::Forbidden(format!(
                "analyst {} has no database role: MCP_ANALYST_ROLES maps nothing to them, and this server refuses unmapped analysts (MCP_ANALYST_UNMAPPED=refuse)",
                caller.name
            ))),
        }
    }
}

fn check_role_name(role: &str) -> Result<(), String> {
    if role.len() > MAX_ROLE_NAME_BYTES {
        return Err(format!(
            "names a role longer than {MAX_ROLE_NAME_BYTES} bytes"
        ));
    }
    if role.chars().any(char::is_control) {
        return Err("names a role with a control character".into());
    }
    Ok(())
}

impl Session<'_> {
    /// `SET LOCAL ROLE`: the rest of this transaction runs as `role`. Ok(Err) when the database
    /// refuses (no such role, or the login role is not a member of it).
    fn become_role(&mut self, role: &str) -> Result<Result<(), String>, DbError> {
        match self
            .client
            .batch_execute(&format!("SET LOCAL ROLE {}", quote_ident(role)))
        {
            Ok(()) => Ok(Ok(())),
            Err(e) => match e.as_db_error() {
                Some(db) => Ok(Err(format!("{} ({})", db.message(), db.code().code()))),
                None => Err(e),
            },
        }
    }

    fn current_role(&mut self) -> Result<String, DbError> {
        let rows = self.client.query_typed("SELECT current_user::text", &[])?;
        Ok(rows.first().and_then(|row| row.get(0)).unwrap_or_default())
    }
}

impl Pool {
    /// The self-check of an analyst's role, run once in a transaction already SET to it.
    /// Err names what it could do; the verdict is kept for the life of the process.
    fn verdict_on_role(
        &self,
        session: &mut Session,
        role: &str,
    ) -> Result<Result<(), String>, DbError> {
        if let Some(verdict) = lock(&self.role_verdicts).get(role) {
            return Ok(verdict.clone());
        }
        // Unnamed statement, like the login role's check: safe behind a transaction pooler.
        let rows = session.client.query_typed(ROLE_CHECK_SQL, &[])?;
        let problems: Vec<String> = match rows.first() {
            Some(row) => row.try_get(1)?,
            None => vec![format!("role {role} is not in pg_roles")],
        };
        let verdict = if problems.is_empty() {
            log_event("info", "analyst role checked: read-only", &[("role", role)]);
            Ok(())
        } else if self.allow_privileged_role {
            log_event("warn", "!!! MCP_ALLOW_PRIVILEGED_ROLE=1: serving an analyst's role that can write or act outside the database !!!",
                &[("role", role), ("privileges", &problems.join(", "))]);
            Ok(())
        } else {
            log_event("error", "refusing to serve as an analyst's role that is not read-only (fix its grants, or set MCP_ALLOW_PRIVILEGED_ROLE=1)",
                &[("role", role), ("privileges", &problems.join(", "))]);
            Err(problems.join(", "))
        };
        lock(&self.role_verdicts).insert(role.to_string(), verdict.clone());
        Ok(verdict)
    }

    /// At first connect: every explicitly mapped role is checked like the login role (a role
    /// that can write stops the process); one that cannot be reached yet is only warned about.
    fn check_mapped_roles(&self, client: &mut postgres::Client) {
        let inherits = client
            .query_typed(
                "SELECT rolinherit FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .ok()
            .and_then(|rows| rows.first().and_then(|row| row.try_get(0).ok()))
            .unwrap_or(false);
        if inherits && !self.mapped_roles.is_empty() {
            log_event("warn", "the login role is INHERIT: alone it holds the privileges of every analyst role it is a member of; make it NOINHERIT (role.sql -v analysts=… does)", &[]);
        }
        for role in &self.mapped_roles {
            let mut session = Session {
                client: &mut *client,
                custom_types: false,
                read_at: String::new(),
                database: String::new(),
            };
            let checked = session
                .client
                .batch_execute("BEGIN READ ONLY")
                .and_then(|()| session.become_role(role))
                .and_then(|became| match became {
                    Ok(()) => self.verdict_on_role(&mut session, role).map(Some),
                    Err(why) => {
                        log_event("warn", "an analyst's role cannot be used yet; their calls are refused until it can",
                            &[("role", role), ("error", &why)]);
                        Ok(None)
                    }
                });
            let _ = client.batch_execute("ROLLBACK");
            match checked {
                Ok(Some(Err(_))) => std::process::exit(3),
                Ok(_) => {}
                Err(e) => log_event(
                    "warn",
                    "an analyst's role could not be checked; it will be on first use",
                    &[("role", role), ("error", &describe_db_error(&e))],
                ),
            }
        }
    }
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// Logging and metrics
// Contract: one line per event on stderr, as text or (MCP_LOG_FORMAT=json) one JSON object per
// line. Every tool call writes one audit line: time, caller, how they authenticated, tool,
// status, rows, truncated, ms and the SQL cut to 200 characters with newlines escaped (plus,
// with an audit log, the seq and tag of its line there). Tokens and passwords never appear.
// /metrics shows aggregates only: no caller names, no SQL, no tokens.
// ════════════════════════════════════════════════════════════════════════════════════════════

static LOG_JSON: AtomicBool = AtomicBool::new(false);

fn log_event(level: &str, message: &str, fields: &[(&str, &str)]) {
    let mut line = String::with_capacity(160);
    let time = rfc3339_now();
    if LOG_JSON.load(Ordering::Relaxed) {
        let mut object = Map::new();
        object.insert("ts".into(), json!(time));
        object.insert("level".into(), json!(level));
        object.insert("msg".into(), json!(message));
        for (key, value) in fields {
            object.insert((*key).into(), json!(value));
        }
        line.push_str(&Value::Object(object).to_string());
    } else {
        let _ = write!(line, "{time} {:<5} {message}", level.to_uppercase());
        for (key, value) in fields {
            if value.is_empty()
                || value.contains(|c: char| c.is_whitespace() || c == '"' || c == '=')
            {
                let _ = write!(line, " {key}={}", Value::String((*value).to_string()));
            } else {
                let _ = write!(line, " {key}={value}");
            }
        }
    }
    line.push('\n');
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

/// The stderr audit line. With an audit log it names the file line's seq and tag: shipped off
/// the host, these are the witness that shows lines removed from the end of the file.
fn log_audit_line(call: &CallRecord, receipt: Option<AuditReceipt>) {
    let ms = format!("{:.1}", call.elapsed.as_secs_f64() * 1000.0);
    let rows = call.rows.to_string();
    let mut fields = vec![
        ("caller", call.caller.name.as_str()),
        ("via", call.caller.via),
        ("tool", call.tool),
        ("status", call.status),
        ("rows", rows.as_str()),
        ("truncated", call.truncated.unwrap_or("no")),
        ("ms", ms.as_str()),
    ];
    if let Some(client) = &call.caller.client {
        fields.push(("client", client));
    }
    if let Some(database) = call.database {
        fields.push(("database", database));
    }
    if let Some(role) = &call.db_role {
        fields.push(("db_role", role));
    }
    let sql = call.sql.map(audit_sql);
    if let Some(sql) = &sql {
        fields.push(("sql", sql));
    }
    let witness = receipt.map(|r| (r.seq.to_string(), hex(&r.tag[..8])));
    if let Some((seq, tag)) = &witness {
        fields.push(("audit_seq", seq));
        fields.push(("audit_tag", tag));
    }
    log_event("info", "audit", &fields);
}

/// The SQL as the audit line shows it: at most 200 characters, newlines escaped.
fn audit_sql(sql: &str) -> String {
    let mut cut: String = sql.trim().chars().take(200).collect();
    if sql.trim().chars().count() > 200 {
        cut.push('…');
    }
    cut
}

fn rfc3339_now() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ((year, month, day), (hour, minute, second)) = civil_time(since_epoch.as_secs());
    format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{:03}Z",
        since_epoch.subsec_millis()
    )
}

/// Seconds since the epoch as `2025-01-31 23:59:59 UTC`, for operators' messages.
fn format_unix_time(seconds: u64) -> String {
    let ((year, month, day), (hour, minute, second)) = civil_time(seconds);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} UTC")
}

/// ((year, month, day), (hour, minute, second)) in UTC.
fn civil_time(seconds: u64) -> ((i64, i64, i64), (u64, u64, u64)) {
    let (days, rem) = ((seconds / 86_400) as i64, seconds % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date crate for one timestamp.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    ((year, month, day), (rem / 3600, rem % 3600 / 60, rem % 60))
}

const LATENCY_BUCKETS_S: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];
const RPC_METHODS: [&str; 6] = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "notifications",
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS_S.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(LATENCY_BUCKETS_S) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// (database — with MCP_DATABASES, a name from the configuration —, tool, outcome).
type ToolCallKey = (Option<&'static str>, &'static str, &'static str);

#[derive(Default)]
struct Metrics {
    // Keys are static strings from closed sets: counting allocates nothing, and no label value
    // can come from a client (so no cardinality blow-up and no injection into the exposition).
    http: Mutex<BTreeMap<(&'static str, u16), u64>>,
    rpc: Mutex<BTreeMap<&'static str, u64>>,
    tools: Mutex<BTreeMap<ToolCallKey, u64>>,
    tool_latency: Mutex<BTreeMap<&'static str, Histogram>>,
    limits: Mutex<BTreeMap<&'static str, u64>>,
    rows_returned: AtomicU64,
    bytes_returned: AtomicU64,
    auth_failures: AtomicU64,
}

impl Metrics {
    fn count_http(&self, method: &str, response: &Response) {
        let method = ["GET", "POST", "HEAD", "DELETE", "PUT", "OPTIONS", "PATCH"]
            .into_iter()
            .find(|known| *known == method)
            .unwrap_or(if method.is_empty() { "none" } else { "other" });
        *lock(&self.http)
            .entry((method, response.status))
            .or_insert(0) += 1;
    }

    fn count_rpc(&self, method: &str) {
        let method = RPC_METHODS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("other");
        *lock(&self.rpc).entry(method).or_insert(0) += 1;
    }

    /// A limit that refused or cut work short (a closed set of names, see mcp_limits_hit_total).
    fn count_limit(&self, limit: &'static str) {
        *lock(&self.limits).entry(limit).or_insert(0) += 1;
    }

    fn count_tool(
        &self,
        (database, tool, outcome): ToolCallKey,
        elapsed: Duration,
        rows: u64,
        bytes: usize,
    ) {
        *lock(&self.tools)
            .entry((database, tool, outcome))
            .or_insert(0) += 1;
        lock(&self.tool_latency)
            .entry(tool)
            .or_default()
            .observe(elapsed.as_secs_f64());
        self.rows_returned.fetch_add(rows, Ordering::Relaxed);
        self.bytes_returned
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Prometheus text exposition format 0.0.4, written by hand.
    /// With named databases (MCP_DATABASES) every pool family carries `database="<name>"`.
    fn render(&self, databases: &Databases, rates: &RateLimiter) -> String {
        let label = |db: &Database, other: String| match (databases.named, other.is_empty()) {
            (false, _) => other,
            (true, true) => format!("database=\"{}\"", db.name),
            (true, false) => format!("database=\"{}\",{other}", db.name),
        };
        let per_pool = |value: &dyn Fn(&Pool) -> f64| -> Vec<(String, f64)> {
            databases
                .all()
                .map(|db| (label(db, String::new()), value(&db.pool)))
                .collect()
        };
        let mut out = String::with_capacity(4096);
        let http: Vec<(String, f64)> = lock(&self.http)
            .iter()
            .map(|((method, status), n)| {
                (
                    format!("method=\"{method}\",status=\"{status}\""),
                    *n as f64,
                )
            })
            .collect();
        write_family(
            &mut out,
            "mcp_http_requests_total",
            "counter",
            "HTTP requests by method and status.",
            &http,
        );
        let rpc: Vec<(String, f64)> = lock(&self.rpc)
            .iter()
            .map(|(method, n)| (format!("method=\"{method}\""), *n as f64))
            .collect();
        write_family(
            &mut out,
            "mcp_rpc_requests_total",
            "counter",
            "JSON-RPC requests by method.",
            &rpc,
        );
        let tools: Vec<(String, f64)> = lock(&self.tools)
            .iter()
            .map(|((database, tool, outcome), n)| {
                let database = database.map_or(String::new(), |db| format!("database=\"{db}\","));
                (
                    format!("{database}tool=\"{tool}\",outcome=\"{outcome}\""),
                    *n as f64,
                )
            })
            .collect();
        write_family(
            &mut out,
            "mcp_tool_calls_total",
            "counter",
            "Tool calls by tool and outcome.",
            &tools,
        );
        write_family(
            &mut out,
            "mcp_tool_duration_seconds",
            "histogram",
            "Tool call latency.",
            &[],
        );
        for (tool, histogram) in lock(&self.tool_latency).iter() {
            let name = "mcp_tool_duration_seconds";
            for (bound, n) in LATENCY_BUCKETS_S.iter().zip(histogram.buckets) {
                let _ = writeln!(out, "{name}_bucket{{tool=\"{tool}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{tool=\"{tool}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(out, "{name}_sum{{tool=\"{tool}\"}} {}", histogram.sum);
            let _ = writeln!(out, "{name}_count{{tool=\"{tool}\"}} {}", histogram.count);
        }
        let errors: Vec<(String, f64)> = databases
            .all()
            .flat_map(|db| {
                lock(&db.pool.db_errors)
                    .iter()
                    .map(|(class, n)| (label(db, format!("class=\"{class}\"")), *n as f64))
                    .collect::<Vec<_>>()
            })
            .collect();
        write_family(
            &mut out,
            "mcp_db_errors_total",
            "counter",
            "Database errors by SQLSTATE class.",
            &errors,
        );
        write_family(
            &mut out,
            "mcp_db_tls",
            "gauge",
            "Security of the newest database connection: 0 unencrypted, 1 encrypted but certificate not verified, 2 CA verified, 3 CA and host name verified; -1 before the first connection. Label: the configured sslmode.",
            &databases
                .all()
                .map(|db| {
                    (
                        label(db, format!("sslmode=\"{}\"", db.pool.database.sslmode.name())),
                        f64::from(db.pool.tls_level.load(Ordering::Relaxed)),
                    )
                })
                .collect::<Vec<_>>(),
        );
        let limits: Vec<(String, f64)> = lock(&self.limits)
            .iter()
            .map(|(limit, n)| (format!("limit=\"{limit}\""), *n as f64))
            .collect();
        write_family(
            &mut out,
            "mcp_limits_hit_total",
            "counter",
            "Work refused or cut short by a limit: max_batch, json_values, batch_answers, batch_time, caller_share, caller_rate.",
            &limits,
        );
        let tracked = databases
            .all()
            .map(|db| db.pool.gauges().2.analysts)
            .sum::<usize>()
            + rates.tracked(Instant::now());
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as f64;
        #[rustfmt::skip]
        let singles = [
            ("mcp_rows_returned_total", "counter", "Rows returned by query and sample_table.", load(&self.rows_returned)),
            ("mcp_result_bytes_total", "counter", "Bytes of structured tool results.", load(&self.bytes_returned)),
            ("mcp_auth_failures_total", "counter", "Requests refused for a missing or wrong token.", load(&self.auth_failures)),
            ("mcp_callers_tracked", "gauge", "Analysts with per-analyst state held (calls in flight or a rate bucket refilling).", tracked as f64),
        ];
        for (name, kind, help, value) in singles {
            write_family(&mut out, name, kind, help, &[(String::new(), value)]);
        }
        #[rustfmt::skip]
        let pools: [PoolFamily; 8] = [
            ("mcp_db_retries_total", "counter", "Work retried on a fresh connection after a disconnect.", &|p| load(&p.retries)),
            ("mcp_db_disconnects_total", "counter", "Database connections found lost.", &|p| load(&p.disconnects)),
            ("mcp_pool_max", "gauge", "MCP_POOL_MAX.", &|p| p.permits.capacity as f64),
            ("mcp_pool_open", "gauge", "Open database connections.", &|p| p.gauges().0 as f64),
            ("mcp_pool_idle", "gauge", "Idle pooled connections.", &|p| p.gauges().1 as f64),
            ("mcp_pool_in_use", "gauge", "Checked-out connections.", &|p| p.gauges().2.in_use as f64),
            ("mcp_pool_waiters", "gauge", "Requests waiting for a connection.", &|p| p.gauges().2.waiting as f64),
            ("mcp_fair_share_waiters", "gauge", "Calls waiting because their analyst holds its whole share.", &|p| p.gauges().2.waiting_for_own as f64),
        ];
        for (name, kind, help, value) in pools {
            write_family(&mut out, name, kind, help, &per_pool(value));
        }
        out
    }
}

/// A metric family with one sample per database pool: name, type, help, and how to read it.
type PoolFamily<'a> = (&'a str, &'a str, &'a str, &'a dyn Fn(&Pool) -> f64);

/// One metric family: its HELP and TYPE lines, then one sample per label set ("" = no labels).
fn write_family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// Audit log
// Contract: with MCP_AUDIT_LOG set, every tool call also appends one JSON line to that file, and
// the answer is sent only once the line is written (and, with MCP_AUDIT_FSYNC=always, on disk):
// time, caller and how they authenticated, tool, arguments, status, rows, ms, the SQL in full up
// to MCP_AUDIT_MAX_SQL_BYTES and the SHA-256 of all of it. The file is a chain: each line names
// the previous line's tag (`prev`) and ends with its own `tag`, HMAC-SHA256 under the key of
// MCP_AUDIT_KEY_FILE over everything before it. Without the key (operators keep a copy off this
// host) no line can be edited, inserted, removed or reordered without `verify-audit` naming the
// first line where the chain breaks. The chain continues across restarts (the last line is read
// and its tag checked at start; an incomplete last line from a crash is cut off and the cut is
// recorded) and across rotation (a new file opens with a `rotate` line linked to the old file's
// last). A line that cannot be written fails its call unless MCP_AUDIT_ON_FAILURE=serve, and a
// failed write leaves nothing half-written. Removing lines from the very end is the one change
// a chain cannot show by itself: the stderr audit line carries each line's seq and tag as the
// witness `verify-audit --expect` compares with.
// ════════════════════════════════════════════════════════════════════════════════════════════

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The `prev` of the first line of a chain.
const GENESIS_TAG: [u8; 32] = [0; 32];
/// Bytes after a line's content: `,"tag":"` + 64 hex digits + `"}`.
const TAG_SUFFIX_LEN: usize = 8 + 64 + 2;
/// How long a string argument other than the SQL may be in an audit line.
const AUDIT_ARGUMENT_CHARS: usize = 256;

/// The keyed HMAC state, cloned for every line; never printed.
#[derive(Clone)]
struct AuditKey(HmacSha256);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<secret>)")
    }
}

impl AuditKey {
    /// Reads a key file: its bytes, without trailing whitespace (a newline from `echo`), at least 32.
    fn from_file(path: &str) -> Result<AuditKey, String> {
        use hmac::KeyInit;
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let end = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        if end < 32 {
            return Err(format!(
                "{path} holds {end} bytes of key; at least 32 are needed (e.g. head -c 32 /dev/urandom | base64 > {path})"
            ));
        }
        HmacSha256::new_from_slice(&bytes[..end])
            .map(AuditKey)
            .map_err(|e| format!("{path}: {e}"))
    }

    fn tag(&self, content: &[u8]) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = self.0.clone();
        mac.update(content);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time comparison of `tag` with the tag `content` should have.
    fn verifies(&self, content: &[u8], tag: &[u8; 32]) -> bool {
        use hmac::Mac;
        let mut mac = self.0.clone();
        mac.update(content);
        mac.verify_slice(tag).is_ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AuditFsync {
    /// fdatasync after every line, before the call is answered.
    Always,
    /// fdatasync once a second: a power cut can lose up to a second of lines.
    Interval,
}

#[derive(Debug, Clone)]
struct AuditConfig {
    path: std::path::PathBuf,
    key: AuditKey,
    fsync: AuditFsync,
    /// true (MCP_AUDIT_ON_FAILURE=refuse): a call whose line cannot be written fails.
    refuse_unaudited: bool,
    /// Rotate once the file would grow past this (0: never).
    rotate_bytes: u64,
    max_sql_bytes: usize,
}

impl AuditConfig {
    fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<AuditConfig>, ConfigError> {
        let (path, key_file) = match (get("MCP_AUDIT_LOG"), get("MCP_AUDIT_KEY_FILE")) {
            (None, None) => return Ok(None),
            (Some(path), Some(key_file)) => (path, key_file),
            (Some(_), None) => return Err(ConfigError(
                "MCP_AUDIT_LOG needs MCP_AUDIT_KEY_FILE: the file of the key that chains its lines (at least 32 bytes)".into(),
            )),
            (None, Some(_)) => return Err(ConfigError(
                "MCP_AUDIT_KEY_FILE is set but MCP_AUDIT_LOG is not: name the audit file too".into(),
            )),
        };
        let key = AuditKey::from_file(&key_file)
            .map_err(|e| ConfigError(format!("MCP_AUDIT_KEY_FILE: {e}")))?;
        let fsync = match get("MCP_AUDIT_FSYNC").as_deref() {
            None | Some("always") => AuditFsync::Always,
            Some("interval") => AuditFsync::Interval,
            Some(other) => {
                return Err(ConfigError(format!(
                    "MCP_AUDIT_FSYNC must be always or interval, not {other:?}"
                )))
            }
        };
        let refuse_unaudited = match get("MCP_AUDIT_ON_FAILURE").as_deref() {
            None | Some("refuse") => true,
            Some("serve") => false,
            Some(other) => {
                return Err(ConfigError(format!(
                    "MCP_AUDIT_ON_FAILURE must be refuse or serve, not {other:?}"
                )))
            }
        };
        Ok(Some(AuditConfig {
            path: path.into(),
            key,
            fsync,
            refuse_unaudited,
            rotate_bytes: parse_number(get, "MCP_AUDIT_ROTATE_BYTES", 104_857_600, 0, u64::MAX)?,
            max_sql_bytes: parse_number(get, "MCP_AUDIT_MAX_SQL_BYTES", 65_536, 256, 1 << 20)?
                as usize,
        }))
    }
}

/// One tool call as the audit lines (stderr and file) record it.
struct CallRecord<'a> {
    caller: &'a Caller,
    tool: &'a str,
    arguments: &'a Arguments,
    status: &'a str,
    rows: u64,
    truncated: Option<&'a str>,
    elapsed: Duration,
    sql: Option<&'a str>,
    /// The analyst's own database role (MCP_ANALYST_ROLES); None: the login role.
    db_role: Option<String>,
    /// The database the call worked in, when the databases are named (MCP_DATABASES).
    database: Option<&'a str>,
}

impl CallRecord<'_> {
    /// The fields of the file's line (seq and prev are added when it is sealed).
    fn fields(&self, max_sql_bytes: usize) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("ts".into(), json!(rfc3339_now()));
        fields.insert("event".into(), json!("call"));
        fields.insert("caller".into(), json!(self.caller.name));
        fields.insert("via".into(), json!(self.caller.via));
        if let Some(client) = &self.caller.client {
            fields.insert("client".into(), json!(client));
        }
        if let Some(database) = self.database {
            fields.insert("database".into(), json!(database));
        }
        if let Some(role) = &self.db_role {
            fields.insert("db_role".into(), json!(role));
        }
        fields.insert("tool".into(), json!(self.tool));
        let arguments: Map<String, Value> = self
            .arguments
            .0
            .iter()
            .filter(|(name, _)| name.as_str() != "sql")
            .map(|(name, value)| (name.clone(), shortened_argument(value)))
            .collect();
        fields.insert("args".into(), Value::Object(arguments));
        fields.insert("status".into(), json!(self.status));
        fields.insert("rows".into(), json!(self.rows));
        fields.insert("truncated".into(), json!(self.truncated));
        fields.insert(
            "ms".into(),
            json!((self.elapsed.as_secs_f64() * 1e4).round() / 10.0),
        );
        if let Some(sql) = self.sql {
            let cut = sql.len() > max_sql_bytes;
            let kept = if cut {
                &sql[..floor_char_boundary(sql, max_sql_bytes)]
            } else {
                sql
            };
            fields.insert("sql".into(), json!(kept));
            fields.insert("sql_bytes".into(), json!(sql.len()));
            fields.insert("sql_cut".into(), json!(cut));
            fields.insert("sql_sha256".into(), json!(hex(&sha256(sql.as_bytes()))));
        }
        fields
    }
}

fn shortened_argument(value: &Value) -> Value {
    match value {
        Value::String(text) if text.chars().count() > AUDIT_ARGUMENT_CHARS => {
            let mut cut: String = text.chars().take(AUDIT_ARGUMENT_CHARS).collect();
            cut.push('…');
            Value::String(cut)
        }
        Value::Array(items) => Value::Array(items.iter().map(shortened_argument).collect()),
        other => other.clone(),
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// A line of the file, checked: its tag matches its content under the key.
#[derive(Debug)]
struct SealedLine {
    seq: u64,
    prev: [u8; 32],
    tag: [u8; 32],
    fields: Map<String, Value>,
}

/// Builds a line: `{"seq":N,<fields>,"prev":"…","tag":"…"}` with the tag over all before it.
fn seal_line(
    key: &AuditKey,
    seq: u64,
    prev: &[u8; 32],
    fields: &Map<String, Value>,
) -> (String, [u8; 32]) {
    let body = serde_json::to_string(fields).unwrap_or_default();
    let inner = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or("");
    let separator = if inner.is_empty() { "" } else { "," };
    let mut line = format!(r#"{{"seq":{seq}{separator}{inner},"prev":"{}""#, hex(prev));
    line.push('}');
    let tag = key.tag(line.as_bytes());
    line.pop();
    let _ = writeln!(line, r#","tag":"{}"}}"#, hex(&tag));
    (line, tag)
}

/// Checks one line (without its newline): shape, then tag. The content is the line with its
/// tag field removed, byte for byte, so any edit anywhere changes it.
fn open_line(key: &AuditKey, line: &[u8]) -> Result<SealedLine, &'static str> {
    let malformed = "not a complete audit record (cut short, or not written by analytics-mcp)";
    if line.len() < TAG_SUFFIX_LEN + 2 {
        return Err(malformed);
    }
    let (content, suffix) = line.split_at(line.len() - TAG_SUFFIX_LEN);
    let tag_hex = suffix
        .strip_prefix(br#","tag":""#)
        .and_then(|s| s.strip_suffix(br#""}"#))
        .and_then(|hex| std::str::from_utf8(hex).ok())
        .and_then(parse_hex_digest)
        .ok_or(malformed)?;
    let mut content = content.to_vec();
    content.push(b'}');
    if !key.verifies(&content, &tag_hex) {
        return Err(
            "its tag does not match its content (edited, inserted, or sealed with another key)",
        );
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&content) else {
        return Err(malformed);
    };
    let seq = fields.get("seq").and_then(Value::as_u64).ok_or(malformed)?;
    let prev = fields
        .get("prev")
        .and_then(Value::as_str)
        .and_then(parse_hex_digest)
        .ok_or(malformed)?;
    Ok(SealedLine {
        seq,
        prev,
        tag: tag_hex,
        fields,
    })
}

/// What a written line leaves for the stderr witness.
#[derive(Debug, Clone, Copy)]
struct AuditReceipt {
    seq: u64,
    tag: [u8; 32],
}

/// The open audit file and where the chain stands.
struct AuditFile {
    file: std::fs::File,
    len: u64,
    seq: u64,
    last_tag: [u8; 32],
    unsynced: bool,
    /// After the stop line nothing more joins the chain.
    stopped: bool,
}

struct AuditLog {
    config: AuditConfig,
    state: Mutex<AuditFile>,
    failures: AtomicU64,
}

impl AuditLog {
    /// Opens (or creates) the file, takes its lock, finds where the chain stands and writes the
    /// `start` line. Any doubt about the chain stops the start: serving would break it.
    fn open(config: AuditConfig) -> Result<AuditLog, String> {
        let path = config.path.display().to_string();
        let (file, mut len) = open_audit_file(&config.path)?;
        let mut start = Map::new();
        start.insert("ts".into(), json!(rfc3339_now()));
        start.insert("event".into(), json!("start"));
        start.insert("version".into(), json!(VERSION));
        start.insert("pid".into(), json!(std::process::id()));
        let (last, complete_len) =
            read_last_line(&file, len).map_err(|e| format!("cannot read {path}: {e}"))?;
        if complete_len < len {
            // A crash in the middle of a write (or a cut): keep the chain whole, say so in it.
            file.set_len(complete_len)
                .map_err(|e| format!("cannot cut the incomplete last line of {path}: {e}"))?;
            start.insert("repaired_bytes".into(), json!(len - complete_len));
            log_event(
                "warn",
                "audit log ended with an incomplete line (a crash during a write?); cut it off and recorded the cut",
                &[("file", &path), ("bytes", &(len - complete_len).to_string())],
            );
            len = complete_len;
        }
        let (seq, last_tag) = match last {
            Some(line) => chain_end(&config.key, &line, &path)?,
            None => match newest_rotated_file(&config.path) {
                Some(rotated) => {
                    let name = rotated.display().to_string();
                    let (old, old_len) = open_audit_file(&rotated)?;
                    let (line, _) = read_last_line(&old, old_len)
                        .map_err(|e| format!("cannot read {name}: {e}"))?;
                    let line = line.ok_or_else(|| format!("{name} holds no complete line"))?;
                    start.insert("continues".into(), json!(file_name(&rotated)));
                    chain_end(&config.key, &line, &name)?
                }
                None => (0, GENESIS_TAG),
            },
        };
        let log = AuditLog {
            state: Mutex::new(AuditFile {
                file,
                len,
                seq,
                last_tag,
                unsynced: false,
                stopped: false,
            }),
            config,
            failures: AtomicU64::new(0),
        };
        log.append(start)?;
        Ok(log)
    }

    fn record_call(&self, call: &CallRecord) -> Result<AuditReceipt, String> {
        self.append(call.fields(self.config.max_sql_bytes))
            .inspect_err(|_| {
                self.failures.fetch_add(1, Ordering::Relaxed);
            })
    }

    /// The last line of a clean shutdown.
    fn record_stop(&self) {
        let mut stop = Map::new();
        stop.insert("ts".into(), json!(rfc3339_now()));
        stop.insert("event".into(), json!("stop"));
        if let Err(e) = self.append(stop) {
            log_event(
                "error",
                "audit log: cannot write the stop line",
                &[("error", &e)],
            );
        }
        lock(&self.state).stopped = true;
    }

    fn append(&self, fields: Map<String, Value>) -> Result<AuditReceipt, String> {
        let config = &self.config;
        let mut state = lock(&self.state);
        if state.stopped {
            return Err("the server is shutting down and its audit log is closed".into());
        }
        let mut sealed = seal_line(&config.key, state.seq + 1, &state.last_tag, &fields);
        let rotate_at = config.rotate_bytes;
        if rotate_at > 0 && state.len > 0 && state.len + sealed.0.len() as u64 > rotate_at {
            state.rotate(config)?;
            sealed = seal_line(&config.key, state.seq + 1, &state.last_tag, &fields);
        }
        state.write(config, sealed)
    }

    /// Background loop for MCP_AUDIT_FSYNC=interval.
    fn sync_every_second(&self) {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let mut state = lock(&self.state);
            if !state.unsynced {
                continue;
            }
            match state.file.sync_data() {
                Ok(()) => state.unsynced = false,
                Err(e) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    log_event(
                        "error",
                        "audit log: fsync failed; lines answered in the last second may not be on disk",
                        &[("error", &e.to_string())],
                    );
                }
            }
        }
    }
}

impl AuditFile {
    /// Appends one line sealed as the next (seq + 1, after last_tag); on any failure the file is cut back to where it was, so no
    /// half-written line stays behind.
    fn write(
        &mut self,
        config: &AuditConfig,
        (line, tag): (String, [u8; 32]),
    ) -> Result<AuditReceipt, String> {
        let seq = self.seq + 1;
        let path = config.path.display();
        let mut written = (&self.file).write_all(line.as_bytes());
        if written.is_ok() && config.fsync == AuditFsync::Always {
            written = self.file.sync_data();
        }
        if let Err(e) = written {
            let _ = self.file.set_len(self.len);
            return Err(format!("cannot write {path}: {e}"));
        }
        self.len += line.len() as u64;
        self.seq = seq;
        self.last_tag = tag;
        self.unsynced = config.fsync == AuditFsync::Interval;
        Ok(AuditReceipt { seq, tag })
    }

    /// Moves the full file to `<path>.<last seq, 12 digits>` and continues in a new one whose
    /// first line links to the old file's last. The new file is made first, so a failure
    /// leaves the old one in place.
    fn rotate(&mut self, config: &AuditConfig) -> Result<(), String> {
        let path = &config.path;
        let rotated = rotated_file_name(path, self.seq);
        let mut next_path = path.clone().into_os_string();
        next_path.push(".next");
        let next_path = std::path::PathBuf::from(next_path);
        let _ = std::fs::remove_file(&next_path);
        let (next, _) = open_audit_file(&next_path)?;
        let moved = self
            .file
            .sync_data()
            .and_then(|()| std::fs::rename(path, &rotated));
        if let Err(e) = moved {
            let _ = std::fs::remove_file(&next_path);
            return Err(format!("cannot rotate {}: {e}", path.display()));
        }
        if let Err(e) = std::fs::rename(&next_path, path) {
            let _ = std::fs::rename(&rotated, path);
            let _ = std::fs::remove_file(&next_path);
            return Err(format!("cannot rotate {}: {e}", path.display()));
        }
        sync_parent_dir(path);
        self.file = next;
        self.len = 0;
        let mut first = Map::new();
        first.insert("ts".into(), json!(rfc3339_now()));
        first.insert("event".into(), json!("rotate"));
        first.insert("previous_file".into(), json!(file_name(&rotated)));
        let sealed = seal_line(&config.key, self.seq + 1, &self.last_tag, &first);
        self.write(config, sealed)?;
        log_event(
            "info",
            "audit log rotated",
            &[("file", &rotated.display().to_string())],
        );
        Ok(())
    }
}

/// Makes a created or renamed file's directory entry durable too.
fn sync_parent_dir(path: &std::path::Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

/// Where the chain ends, from the last line of a file (whose tag must check out).
fn chain_end(key: &AuditKey, line: &[u8], path: &str) -> Result<(u64, [u8; 32]), String> {
    let sealed = open_line(key, line).map_err(|why| {
        format!(
            "the last line of {path} is {why}. Nothing was written. Run `{SERVER_NAME} verify-audit {path}`; \
             if the file was damaged, move it aside (a new chain then starts) — or check MCP_AUDIT_KEY_FILE"
        )
    })?;
    Ok((sealed.seq, sealed.tag))
}

/// Opens for appending (creating it 0600), and takes an exclusive lock so two servers never
/// interleave one chain.
fn open_audit_file(path: &std::path::Path) -> Result<(std::fs::File, u64), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    extern "C" {
        fn flock(fd: i32, operation: i32) -> i32;
    }
    const LOCK_EX: i32 = 2;
    const LOCK_NB: i32 = 4;
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot open {shown}: {e}"))?;
    let metadata = file
        .metadata()
        .map_err(|e| format!("cannot stat {shown}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if metadata.len() == 0 {
        sync_parent_dir(path);
    }
    // SAFETY: flock(2) on a descriptor this function owns; it only takes an advisory lock.
    if unsafe { flock(file.as_raw_fd(), LOCK_EX | LOCK_NB) } != 0 {
        return Err(format!(
            "{shown} is locked by another process (another analytics-mcp writing the same audit log? give each instance its own file)"
        ));
    }
    Ok((file, metadata.len()))
}

/// The last complete line (without its newline) and the length of the file up to its end;
/// bytes after the last newline are an incomplete line.
fn read_last_line(file: &std::fs::File, len: u64) -> io::Result<(Option<Vec<u8>>, u64)> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 64 * 1024;
    let mut tail: Vec<u8> = Vec::new();
    let mut start = len;
    let mut complete_len = None;
    loop {
        if complete_len.is_none() {
            complete_len = tail
                .iter()
                .rposition(|b| *b == b'\n')
                .map(|i| start + i as u64 + 1);
        }
        match complete_len {
            Some(end) => {
                let newline = (end - start) as usize - 1;
                if let Some(i) = tail[..newline].iter().rposition(|b| *b == b'\n') {
                    return Ok((Some(tail[i + 1..newline].to_vec()), end));
                }
                if start == 0 {
                    return Ok((Some(tail[..newline].to_vec()), end));
                }
            }
            None if start == 0 => return Ok((None, 0)),
            None => {}
        }
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0; (start - from) as usize];
        file.read_exact_at(&mut chunk, from)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        start = from;
    }
}

fn rotated_file_name(path: &std::path::Path, last_seq: u64) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{last_seq:012}"));
    name.into()
}

/// The newest `<path>.<12 digits>` beside `path`, to continue its chain when `path` is new.
fn newest_rotated_file(path: &std::path::Path) -> Option<std::path::PathBuf> {
    let prefix = format!("{}.", file_name(path));
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            name.strip_prefix(&prefix)
                .is_some_and(|n| n.len() == 12 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .max()
        .map(|name| dir.join(name))
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

// ── verify-audit ─────────────────────────────────────────────────────────────────────────────

/// Where a chain stands while files are verified one after the other.
#[derive(Default)]
struct ChainCheck {
    last: Option<(u64, [u8; 32])>,
    first: Option<(u64, [u8; 32])>,
    lines: u64,
    notes: Vec<String>,
    seen_expected: bool,
}

/// `verify-audit [--key-file F] [--expect SEQ:TAG] FILE…`: exit 0 when the chain holds, 1 at the
/// first line where it breaks (named with file, line number and why), 2 for usage errors.
fn run_verify_audit(args: &[String], env: EnvLookup) -> i32 {
    let usage = || {
        eprintln!(
            "usage: {SERVER_NAME} verify-audit [--key-file FILE] [--expect SEQ:TAG] AUDIT_FILE…\n  \
             files oldest first (rotated files sort by name: audit.log.* audit.log); the key defaults to MCP_AUDIT_KEY_FILE;\n  \
             --expect: a seq and tag (or its first 16+ hex digits) from a stderr audit line kept elsewhere"
        );
        2
    };
    let mut key_file = env("MCP_AUDIT_KEY_FILE");
    let mut expect: Option<(u64, String)> = None;
    let mut files = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--key-file" => match rest.next() {
                Some(file) => key_file = Some(file.clone()),
                None => return usage(),
            },
            "--expect" => {
                let parsed = rest.next().and_then(|v| {
                    let (seq, tag) = v.split_once(':')?;
                    let tag = tag.to_ascii_lowercase();
                    let hex_ok = (16..=64).contains(&tag.len())
                        && tag.bytes().all(|b| b.is_ascii_hexdigit());
                    Some((seq.parse().ok()?, tag)).filter(|_| hex_ok)
                });
                match parsed {
                    Some(parsed) => expect = Some(parsed),
                    None => return usage(),
                }
            }
            flag if flag.starts_with("--") => return usage(),
            file => files.push(file.to_string()),
        }
    }
    let Some(key_file) = key_file else {
        eprintln!("verify-audit: no key: pass --key-file FILE or set MCP_AUDIT_KEY_FILE");
        return 2;
    };
    if files.is_empty() {
        return usage();
    }
    let key = match AuditKey::from_file(&key_file) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("verify-audit: {e}");
            return 2;
        }
    };
    let mut chain = ChainCheck::default();
    for file in &files {
        if let Err(broken) = verify_audit_file(&key, file, &mut chain, expect.as_ref()) {
            println!("BROKEN: {broken}");
            return 1;
        }
    }
    let Some((last_seq, last_tag)) = chain.last else {
        println!("BROKEN: no audit lines in {}", files.join(", "));
        return 1;
    };
    if let Some((seq, tag)) = &expect {
        if !chain.seen_expected {
            println!(
                "BROKEN: the witness names seq {seq} (tag {tag}), but the chain {}",
                if *seq > last_seq {
                    format!("ends at seq {last_seq}: lines were removed from the end")
                } else {
                    format!("has another tag at seq {seq}, or does not reach back to it")
                }
            );
            return 1;
        }
    }
    for note in &chain.notes {
        println!("note: {note}");
    }
    let (first_seq, first_prev) = chain.first.unwrap_or((0, GENESIS_TAG));
    let origin = if first_prev == GENESIS_TAG {
        "the start of the chain".to_string()
    } else {
        format!("tag {} (an earlier file, not given)", hex(&first_prev))
    };
    println!(
        "OK: {} lines in {} file(s), seq {first_seq}–{last_seq}, chained from {origin}; last tag {}",
        chain.lines,
        files.len(),
        hex(&last_tag)
    );
    0
}

fn verify_audit_file(
    key: &AuditKey,
    path: &str,
    chain: &mut ChainCheck,
    expect: Option<&(u64, String)>,
) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let incomplete = lines.pop().filter(|rest| !rest.is_empty());
    for (index, line) in lines.iter().enumerate() {
        let at = format!("{path} line {}", index + 1);
        let sealed = open_line(key, line).map_err(|why| format!("{at}: {why}"))?;
        let seq = sealed.seq;
        if let Some((last_seq, last_tag)) = chain.last {
            if sealed.prev != last_tag {
                let why = if seq > last_seq + 1 {
                    format!("seq jumps from {last_seq} to {seq}: {} line(s) before it were deleted or moved (or a file is missing or out of order)", seq - last_seq - 1)
                } else if seq <= last_seq {
                    format!("seq {seq} comes after seq {last_seq}: lines were reordered or repeated (or files given out of order)")
                } else if sealed.prev == GENESIS_TAG {
                    "a new chain starts here: the lines before it are not its predecessors"
                        .to_string()
                } else {
                    "it does not follow the line before it: that line was replaced or inserted"
                        .to_string()
                };
                return Err(format!("{at} (seq {seq}): {why}"));
            }
        } else {
            chain.first = Some((seq, sealed.prev));
        }
        if let Some(bytes) = sealed.fields.get("repaired_bytes").and_then(Value::as_u64) {
            chain.notes.push(format!(
                "{at} (seq {seq}): at this restart the server cut an incomplete line of {bytes} bytes off the end (a crash during a write, or a cut)"
            ));
        }
        if let Some((want_seq, want_tag)) = expect {
            if seq == *want_seq && hex(&sealed.tag).starts_with(want_tag.as_str()) {
                chain.seen_expected = true;
            }
        }
        chain.last = Some((seq, sealed.tag));
        chain.lines += 1;
    }
    if let Some(rest) = incomplete {
        return Err(format!(
            "{path} line {}: the file ends in the middle of a line ({} bytes without a newline): it was cut short",
            lines.len() + 1,
            rest.len()
        ));
    }
    Ok(())
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// Main
// Contract: parse the command line, load the configuration, check the database role when the
// database is reachable (never block on it), bind, serve until SIGTERM/SIGINT, then drain:
// stop accepting, let in-flight requests finish within MCP_SHUTDOWN_GRACE_S, exit 0. Signal
// handlers are installed explicitly, so this works as PID 1 in a container.
// ════════════════════════════════════════════════════════════════════════════════════════════

/// Everything a request can reach. Built once and leaked: it lives as long as the process.
struct App {
    /// The server-wide configuration (each database serves with its own: `Database::config`).
    config: Config,
    /// `resultType` and `_meta` of every 2026-07-28 result (see modern_result_fields).
    modern_result_fields: String,
    auth: Auth,
    /// The OAuth resource + authorization server; None when MCP_OAUTH=off.
    oauth: Option<OAuth>,
    /// Every database with its pool; tool calls pick one (see Several databases).
    databases: Databases,
    audit_log: Option<AuditLog>,
    rates: RateLimiter,
    metrics: Metrics,
    connections: ConnectionRegistry,
    connection_slots: Semaphore,
    rejector: Rejector,
}

impl App {
    fn draining(&self) -> bool {
        SHUTDOWN_REQUESTED.load(Ordering::SeqCst)
    }

    fn guard_policy(&self) -> GuardPolicy {
        GuardPolicy {
            statement_timeout_ms: self.config.statement_timeout_ms,
            max_result_bytes: self.config.max_result_bytes,
        }
    }
}

static SHUTDOWN_REQUESTED: AtomicBool = AtomicBool::new(false);
static LISTENER_FD: AtomicI32 = AtomicI32::new(-1);

mod signals {
    //! The three signals we handle, via libc's `signal()` (std has no API for it and one
    //! function does not justify a crate). The handlers only touch atomics and call
    //! `shutdown(2)`, both async-signal-safe; `shutdown` on the listening socket makes the
    //! blocked `accept` return so the main loop can drain.
    use std::sync::atomic::Ordering;

    const SIGHUP: i32 = 1;
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;
    const SHUT_RDWR: i32 = 2;

    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        fn shutdown(fd: i32, how: i32) -> i32;
    }

    extern "C" fn on_signal(signum: i32) {
        if signum == SIGHUP {
            super::RELOAD_REQUESTED.store(true, Ordering::SeqCst);
            return;
        }
        super::SHUTDOWN_REQUESTED.store(true, Ordering::SeqCst);
        let fd = super::LISTENER_FD.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: shutdown(2) is async-signal-safe and fd is our listening socket.
            unsafe {
                shutdown(fd, SHUT_RDWR);
            }
        }
    }

    pub fn install() {
        for signum in [SIGHUP, SIGINT, SIGTERM] {
            // SAFETY: installing a handler that only performs async-signal-safe operations.
            unsafe {
                signal(signum, on_signal);
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = |name: &str| std::env::var(name).ok();
    match args.first().map(String::as_str) {
        None => serve(&env),
        Some("--help") | Some("-h") | Some("help") => print!("{}", help_text()),
        Some("--version") | Some("-V") => println!("{SERVER_NAME} {VERSION}"),
        Some("check-sql") => std::process::exit(run_check_sql(&args[1..], &env)),
        Some("healthcheck") => std::process::exit(run_healthcheck(&env)),
        Some("check-db") => std::process::exit(run_check_db(&args[1..], &env)),
        Some("verify-audit") => std::process::exit(run_verify_audit(&args[1..], &env)),
        Some("oauth-key") => match new_signing_key_line() {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("{SERVER_NAME}: {e}");
                std::process::exit(1);
            }
        },
        Some(other) => {
            eprintln!("{SERVER_NAME}: unknown argument {other:?}; see --help");
            std::process::exit(2);
        }
    }
}

/// `check-sql "<sql>"`, or `check-sql -`: every line of stdin is one statement and gets one
/// verdict line (for checking a file of saved queries, or the guard audit). Exit 1 if any is
/// refused.
fn run_check_sql(args: &[String], env: EnvLookup) -> i32 {
    let Some(sql) = args.first() else {
        eprintln!("usage: {SERVER_NAME} check-sql \"<sql>\" | check-sql - (one statement per line on stdin)");
        return 2;
    };
    let number = |name: &str, default: u64| {
        env(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    };
    let policy = GuardPolicy {
        statement_timeout_ms: number("MCP_STATEMENT_TIMEOUT_MS", 30_000),
        max_result_bytes: number("MCP_MAX_RESULT_BYTES", 150_000),
    };
    let verdict = |sql: &str| match check_sql(sql, &policy) {
        Ok(_) => ("ALLOW".to_string(), 0),
        Err(reason) => (format!("REJECT: {reason}"), 1),
    };
    if sql != "-" {
        let (line, code) = verdict(sql);
        println!("{line}");
        return code;
    }
    let mut out = io::stdout().lock();
    let mut worst = 0;
    for line in io::stdin().lines() {
        let Ok(line) = line else {
            eprintln!("check-sql: stdin is not UTF-8 text");
            return 2;
        };
        let (text, code) = verdict(&line);
        worst = worst.max(code);
        if writeln!(out, "{text}").is_err() {
            return 2;
        }
    }
    worst
}

/// Connects with the server's own database settings, without serving: what was negotiated
/// (or why it failed) and how long a connect takes, for operators and bench/run.sh.
fn run_check_db(args: &[String], env: EnvLookup) -> i32 {
    let repeat = match args.first().map(|n| n.parse::<usize>()) {
        None => 1,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            eprintln!("usage: {SERVER_NAME} check-db [N]   (N from 1 to 1000)");
            return 2;
        }
    };
    let config = match Config::from_env(env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return 2;
        }
    };
    let pool = Pool::new(&config);
    let mut times = Vec::with_capacity(repeat);
    let mut described = String::new();
    for _ in 0..repeat {
        let started = Instant::now();
        match pool.database.connect() {
            Ok((client, negotiated)) => {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                described = negotiated.describe(&pool.database).1;
                drop(client);
            }
            Err(down) => {
                eprintln!(
                    "database unavailable: {} (reason: {})",
                    down.message, down.reason
                );
                return 1;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{described}; connect median {median:.2} ms (min {:.2}, max {:.2}, n={repeat})",
        times[0],
        times[times.len() - 1]
    );
    0
}

/// Probes /healthz of a running server, for container HEALTHCHECKs with no shell or curl.
fn run_healthcheck(env: EnvLookup) -> i32 {
    let host = env("MCP_HOST").unwrap_or_else(|| "127.0.0.1".into());
    let host = match host.trim_start_matches('[').trim_end_matches(']') {
        "0.0.0.0" | "" => "127.0.0.1".to_string(),
        "::" => "::1".to_string(),
        other => other.to_string(),
    };
    let port = env("MCP_PORT").unwrap_or_else(|| "8892".into());
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let probe = || -> io::Result<bool> {
        let address = target
            .to_socket_addrs()?
            .next()
            .ok_or(io::ErrorKind::NotFound)?;
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.take(4096).read_to_string(&mut response)?;
        Ok(response.starts_with("HTTP/1.1 200") && response.contains(r#"{"ok":true}"#))
    };
    match probe() {
        Ok(true) => 0,
        Ok(false) => {
            eprintln!("healthcheck: {target}/healthz did not answer 200 {{\"ok\":true}}");
            1
        }
        Err(e) => {
            eprintln!("healthcheck: cannot reach {target}: {e}");
            1
        }
    }
}

fn serve(env: EnvLookup) {
    // Known before the rest of the configuration, so even start-up errors come out as JSON.
    LOG_JSON.store(
        env("MCP_LOG_FORMAT").is_some_and(|f| f.trim() == "json"),
        Ordering::Relaxed,
    );
    let config = match Config::from_env(env) {
        Ok(config) => config,
        Err(e) => {
            log_event("error", &format!("invalid configuration: {e}"), &[]);
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(config.bind_address()) {
        Ok(listener) => listener,
        Err(e) => {
            let message = format!(
                "cannot listen on {}: {e} (set MCP_HOST / MCP_PORT)",
                config.bind_address()
            );
            log_event("error", &message, &[]);
            std::process::exit(2);
        }
    };
    // Opened before serving: a chain in doubt, or a file that cannot be written, stops the start.
    let audit_log = match config.audit.clone().map(AuditLog::open).transpose() {
        Ok(audit_log) => audit_log,
        Err(e) => {
            log_event("error", &format!("cannot open the audit log: {e}"), &[]);
            std::process::exit(2);
        }
    };
    let oauth = match config.oauth.as_ref().map(|c| OAuth::new(c, &config)) {
        None => None,
        Some(Ok(oauth)) => Some(oauth),
        Some(Err(e)) => {
            log_event("error", &format!("invalid configuration: {e}"), &[]);
            std::process::exit(2);
        }
    };
    let app: &'static App = Box::leak(Box::new(App {
        auth: Auth::new(&config),
        oauth,
        databases: Databases::new(&config),
        audit_log,
        rates: RateLimiter::new(config.rate_per_caller),
        metrics: Metrics::default(),
        connections: ConnectionRegistry::default(),
        connection_slots: Semaphore::new(config.max_connections),
        rejector: Rejector::new(),
        modern_result_fields: modern_result_fields(config.server_label.as_deref()),
        config,
    }));
    {
        use std::os::fd::AsRawFd;
        LISTENER_FD.store(listener.as_raw_fd(), Ordering::SeqCst);
    }
    signals::install();
    spawn_background("rejector", move || app.rejector.run());
    spawn_background("token-watcher", move || app.auth.watch());
    if let Some(oauth) = &app.oauth {
        spawn_background("oauth-housekeeping", move || oauth.housekeeping());
    }
    for database in app.databases.all() {
        spawn_background("query-watchdog", move || {
            database.pool.watchdog.run(&database.pool)
        });
    }
    if let Some(audit_log) = &app.audit_log {
        if audit_log.config.fsync == AuditFsync::Interval {
            spawn_background("audit-fsync", move || audit_log.sync_every_second());
        }
    }
    spawn_background("pool-reaper", move || loop {
        std::thread::sleep(
            (app.config.pool_idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30)),
        );
        for database in app.databases.all() {
            database.pool.reap_idle();
        }
    });
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let auth_mode = match (&app.oauth, app.auth.enabled()) {
        (Some(oauth), _) => oauth.describe(),
        (None, true) => "bearer tokens",
        (None, false) => "none (loopback only)",
    };
    log_event(
        "info",
        "listening",
        &[
            ("address", &address),
            ("endpoint", "/mcp"),
            ("auth", auth_mode),
            ("version", VERSION),
        ],
    );
    for database in app.databases.all() {
        for warning in &database.config.database.warnings {
            log_event("warn", warning, &[("database", &database.name)]);
        }
    }
    // Check each database (and with it the role) without delaying /healthz; a tool call that
    // arrives first runs the same check in its own connect, before any query.
    for database in app.databases.all() {
        spawn_background("startup-probe", move || {
            if let Err(e) = database.pool.probe() {
                log_event(
                    "warn",
                    "database not reachable at start-up; serving anyway, the role is checked on first connect",
                    &[("database", &database.name), ("error", &e.message), ("reason", e.reason)],
                );
            }
        });
    }
    accept_loop(app, &listener);
    drain(app);
}

fn spawn_background(name: &str, work: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(work) {
        log_event(
            "error",
            "cannot start background thread",
            &[("thread", name), ("error", &e.to_string())],
        );
    }
}

fn accept_loop(app: &'static App, listener: &TcpListener) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) if app.draining() => return,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                log_event("warn", "accept failed", &[("error", &e.to_string())]);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        if app.draining() {
            return;
        }
        let Some(permit) = app.connection_slots.try_acquire() else {
            app.rejector.reject(stream);
            continue;
        };
        // The permit moves into the thread; `forget`-free: it is re-created from the semaphore.
        let spawned = std::thread::Builder::new().spawn(move || {
            let _permit = permit;
            serve_connection(app, stream);
        });
        if let Err(e) = spawned {
            log_event(
                "error",
                "cannot spawn a connection thread; connection dropped",
                &[("error", &e.to_string())],
            );
        }
    }
}

fn drain(app: &'static App) {
    log_event(
        "info",
        "shutting down: finishing in-flight requests",
        &[("grace_s", &app.config.shutdown_grace.as_secs().to_string())],
    );
    app.connections.stop_reading_all();
    let finished = app
        .connection_slots
        .wait_idle(Instant::now() + app.config.shutdown_grace);
    for database in app.databases.all() {
        if !finished {
            database.pool.watchdog.cancel_all(&database.pool);
        }
        database.pool.discard_idle();
    }
    if let Some(audit_log) = &app.audit_log {
        audit_log.record_stop();
    }
    if finished {
        log_event("info", "stopped", &[]);
    } else {
        log_event(
            "warn",
            "stopped with requests still running after the grace period",
            &[],
        );
    }
    std::process::exit(0);
}

// ════════════════════════════════════════════════════════════════════════════════════════════
// Unit tests of the pure parts (the end-to-end suite in tests/ drives the real binary).
// ════════════════════════════════════════════════════════════════════════════════════════════

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> GuardPolicy {
        GuardPolicy {
            statement_timeout_ms: 30_000,
            max_result_bytes: 1_000_000,
        }
    }

    #[test]
    fn the_result_view_is_one_html_document_within_its_budget() {
        assert!(RESULT_VIEW_HTML.starts_with("<!DOCTYPE html>"));
        assert!(RESULT_VIEW_HTML.trim_end().ends_with("</html>"));
        assert!(
            RESULT_VIEW_HTML.len() <= 60 * 1024,
            "web/result.html is {} bytes; the budget is 60 KB",
            RESULT_VIEW_HTML.len()
        );
    }

    #[test]
    fn views_are_negotiated_only_with_the_html_profile() {
        let caps = |v: Value| declares_views(Some(&v));
        assert!(caps(
            json!({ "extensions": { UI_EXTENSION: { "mimeTypes": ["text/plain", VIEW_MIME_TYPE] } } })
        ));
        assert!(!caps(json!({ "extensions": { UI_EXTENSION: {} } })));
        assert!(!caps(
            json!({ "extensions": { UI_EXTENSION: { "mimeTypes": VIEW_MIME_TYPE } } })
        ));
        assert!(!caps(
            json!({ "extensions": { UI_EXTENSION: { "mimeTypes": ["text/html"] } } })
        ));
        assert!(!caps(
            json!({ "experimental": { UI_EXTENSION: { "mimeTypes": [VIEW_MIME_TYPE] } } })
        ));
        assert!(!caps(json!("extensions")));
        assert!(!declares_views(None));
    }

    #[test]
    fn view_session_ids_are_marked_visible_ascii_and_unique() {
        let (a, b) = (view_session_id().unwrap(), view_session_id().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(VIEW_SESSION_PREFIX) && a.len() == VIEW_SESSION_PREFIX.len() + 32);
        assert!(a.bytes().all(|c| (0x21..=0x7e).contains(&c)));
    }

    #[test]
    fn only_the_result_shaped_tools_name_the_view() {
        let named = |views: bool| -> Vec<String> {
            tools_list_json(views)["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["_meta"]["ui"]["resourceUri"] == RESULT_VIEW_URI)
                .filter_map(|t| t["name"].as_str().map(String::from))
                .collect()
        };
        assert_eq!(named(true), ["query", "sample_table"]);
        assert!(named(false).is_empty());
        assert!(!TOOLS_LIST.get(false).legacy.contains("_meta"));
    }

    #[test]
    fn sha256_matches_the_fips_test_vectors() {
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            hex(&sha256(&vec![b'a'; 1_000_000])),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn tokens_parse_plain_and_hashed_forms() {
        let hashed = hex(&sha256(b"s3cret"));
        let tokens = parse_token_list(
            ["alice:tok1", " bob : sha256:HASH "]
                .map(|e| e.replace("HASH", &hashed))
                .iter()
                .map(String::as_str),
        )
        .unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].digest, sha256(b"tok1"));
        assert_eq!(tokens[1].name, "bob");
        assert_eq!(tokens[1].digest, sha256(b"s3cret"));
        assert!(parse_token_list(["nocolon"].into_iter()).is_err());
        assert!(parse_token_list(["x:sha256:abc"].into_iter()).is_err());
        assert!(parse_token_list(["bad name:tok"].into_iter()).is_err());
        assert!(parse_token_list([":tok"].into_iter()).is_err());
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let tokens = parse_token_list(["alice:very-secret"].into_iter()).unwrap();
        assert!(!format!("{tokens:?}").contains("very-secret"));
    }

    #[test]
    fn constant_time_eq_compares_whole_digests() {
        let a = sha256(b"a");
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
    }

    #[test]
    fn guard_allows_reads_analysts_write() {
        let allowed = [
            "SELECT 1",
            "select 1;",
            "SELECT 1; -- trailing comment",
            "  (SELECT 1) UNION (SELECT 2)",
            "WITH t AS (SELECT 1 AS x) SELECT * FROM t",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
            "WITH t AS MATERIALIZED (SELECT 1), u AS NOT MATERIALIZED (VALUES (2)) SELECT * FROM t, u",
            "VALUES (1, 'a'), (2, 'b')",
            "TABLE reporting.v_daily",
            "SELECT cluster, comment, load, lock, owner, region, update_time, deleted, \"drop\" FROM tickets.inc",
            "SELECT CASE WHEN x > 1 THEN 'big' ELSE 'small' END FROM t",
            "SELECT * FROM tickets.inc WHERE summary ILIKE '%please delete%'",
            "SELECT 'insert into x; drop table y' AS s",
            "SELECT $$ delete from t; $$ AS s, $tag$ update $tag$",
            "SELECT E'it\\'s ; delete' AS s",
            "SELECT 1 /* delete /* nested */ update */",
            "SELECT \"insert\" FROM t",
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM t",
            "SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.id = t.id LIMIT 1) l",
            "SELECT x::timestamp with time zone FROM t",
            "SELECT * FROM unnest(ARRAY[1,2]) WITH ORDINALITY AS u(v, n)",
            "SELECT substring(name FROM 1 FOR 3) FROM t",
            "SELECT j->>'k', j #> '{a,b}' FROM t",
            "SELECT pg_sleep(1)",
            "SELECT repeat('x', 10)",
            "SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t",
            "SELECT * FROM json_to_record('{\"a\":1}') AS (a int)",
        ];
        for sql in allowed {
            assert!(
                check_sql(sql, &policy()).is_ok(),
                "should allow: {sql} → {:?}",
                check_sql(sql, &policy())
            );
        }
    }

    #[test]
    fn guard_rejects_writes_and_escapes() {
        let rejected = [
            ("", "empty"),
            ("-- only a comment", "empty"),
            ("SELECT 1; DROP TABLE t", "single statement"),
            ("SELECT 1; COMMIT; DROP TABLE t", "single statement"),
            ("DROP TABLE t", "starts with DROP"),
            ("COMMIT", "starts with COMMIT"),
            ("SET default_transaction_read_only = off", "starts with SET"),
            ("/* hi */ DELETE FROM t", "DELETE"),
            (
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                "data-modifying CTE",
            ),
            (
                "WITH d AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM d",
                "data-modifying CTE",
            ),
            ("SELECT * INTO new_table FROM t", "INTO"),
            ("SELECT * FROM t FOR UPDATE", "UPDATE"),
            ("SELECT * FROM t FOR SHARE", "row locks"),
            ("SELECT * FROM t FOR NO KEY UPDATE", "UPDATE"),
            ("SELECT * FROM t FOR KEY SHARE", "row locks"),
            ("SELECT pg_advisory_lock(1)", "advisory"),
            (
                "SELECT pg_catalog.pg_try_advisory_lock_shared(1)",
                "advisory",
            ),
            ("SELECT \"pg_read_file\"('/etc/passwd')", "reads files"),
            (
                "SELECT U&\"pg\\005fread\\005ffile\"('/etc/passwd')",
                "reads files",
            ),
            ("SELECT * FROM pg_read_file('/etc/passwd')", "reads files"),
            (
                "SELECT set_config('default_transaction_read_only', 'off', false)",
                "set_config",
            ),
            ("SELECT pg_sleep(3600)", "pg_sleep"),
            ("SELECT pg_sleep(x) FROM t", "pg_sleep"),
            ("SELECT pg_sleep_for('1 hour')", "sleep"),
            ("SELECT dblink_exec('host=x', 'drop table t')", "dblink"),
            ("SELECT lo_import('/etc/passwd')", "large-object"),
            ("SELECT nextval('s')", "sequence"),
            ("SELECT txid_current()", "transaction id"),
            (
                "SELECT query_to_xml('delete from t', true, true, '')",
                "runs SQL",
            ),
            (
                "SELECT cron.schedule('* * * * *', 'delete from t')",
                "pg_cron",
            ),
            (
                "SELECT drop_chunks('metrics', INTERVAL '1 day')",
                "TimescaleDB",
            ),
            (
                "SELECT add_retention_policy('m', INTERVAL '1 day')",
                "TimescaleDB",
            ),
            (
                "SELECT AddGeometryColumn('t', 'g', 4326, 'POINT', 2)",
                "PostGIS",
            ),
            (
                "SELECT repeat(repeat(repeat('x',1000),1000),1000)",
                "nested",
            ),
            ("SELECT repeat('x', 500000000)", "budget"),
            ("SELECT 'unterminated", "unterminated"),
            ("SELECT $$ unterminated", "unterminated"),
            ("SELECT 1 /* unterminated", "unterminated"),
            ("SELECT \"unterminated", "unterminated"),
            ("EXPLAIN ANALYZE DELETE FROM t", "EXPLAIN"),
            ("(DELETE FROM t)", "DELETE"),
            (
                "MERGE INTO t USING u ON true WHEN MATCHED THEN DELETE",
                "MERGE",
            ),
        ];
        for (sql, why) in rejected {
            let verdict = check_sql(sql, &policy());
            let reason = verdict
                .as_ref()
                .err()
                .map(|r| r.to_lowercase())
                .unwrap_or_default();
            assert!(
                reason.contains(&why.to_lowercase()),
                "should reject {sql:?} mentioning {why:?}, got {verdict:?}"
            );
        }
    }

    #[test]
    fn guard_refuses_what_the_audit_found() {
        let rejected = [
            ("SELECT pg_export_snapshot()", "snapshot"),
            (
                "SELECT * FROM hypopg_create_index('CREATE INDEX ON t (a)')",
                "hypopg",
            ),
            (
                "SELECT gin_clean_pending_list('i'::regclass)",
                "index pages",
            ),
            ("SELECT brin_summarize_range('i', 0)", "index pages"),
            ("SELECT pg_stat_statements_reset()", "statistics"),
            ("SELECT * FROM crosstab('select 1')", "tablefunc"),
            ("SELECT (st_valuecount('t', 'rast', 1, 0)).*", "table name"),
            ("SELECT repack.repack_drop(1, 0)", "pg_repack"),
            (
                "SELECT _timescaledb_functions.drop_chunk('c')",
                "TimescaleDB",
            ),
            ("SELECT partman.run_maintenance()", "pg_partman"),
            ("SELECT pg_read_file_old('x')", "reads files"),
        ];
        for (sql, why) in rejected {
            let reason = check_sql(sql, &policy()).err().unwrap_or_default();
            assert!(
                reason.contains(why),
                "{sql:?} should be refused mentioning {why:?}, got {reason:?}"
            );
        }
        // Decided harmless (README security model): releasing the session's own locks,
        // transaction-scoped locks, hypopg's read functions, TimescaleDB's readers.
        for sql in [
            "SELECT pg_advisory_unlock_all()",
            "SELECT pg_advisory_xact_lock(1)",
            "SELECT * FROM hypopg()",
            "SELECT time_bucket('1 hour', ts), count(*) FROM m GROUP BY 1",
            "SELECT hypertable_size('m'), show_chunks('m')",
        ] {
            assert!(check_sql(sql, &policy()).is_ok(), "{sql:?} should pass");
        }
    }

    fn sink_rows(
        format: ResultFormat,
        keys: &[&str],
        json: &[bool],
        rows: &[&str],
        budget: u64,
    ) -> RowSink {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let mut sink = RowSink::new(format, &keys, json.to_vec(), budget);
        for row in rows {
            assert!(sink.push(row), "row should fit: {row}");
        }
        sink
    }

    #[test]
    fn object_values_are_split_exactly() {
        let mut values = Vec::new();
        for_each_object_value(
            r#"{"a":1,"b":"x,\"}y","c":{"k": [1, "]"]},"d":null,"e":-1.5e3,"f":[]}"#,
            |v| values.push(v.to_string()),
        );
        assert_eq!(
            values,
            [
                "1",
                r#""x,\"}y""#,
                r#"{"k": [1, "]"]}"#,
                "null",
                "-1.5e3",
                "[]"
            ]
        );
        let mut none = Vec::new();
        for_each_object_value("{}", |v| none.push(v));
        for_each_object_value(r#"{"a":"unterminated"#, |v| none.push(v));
        for_each_object_value("", |v| none.push(v));
        assert!(none.len() <= 1, "malformed input never panics");
    }

    #[test]
    fn rows_in_each_format() {
        let rows = [
            r#"{"id":1,"s":"a,b \"c\"","n":null,"e":"","doc":{"k": 1},"t":"x|y\\z\nw"}"#,
            r#"{"id":2,"s":"\"lead","n":null,"e":"e","doc":"str","t":"é"}"#,
        ];
        let keys = ["id", "s", "n", "e", "doc", "t"];
        let json = [false, false, false, false, true, false];
        let arrays = sink_rows(ResultFormat::Arrays, &keys, &json, &rows, 10_000);
        assert_eq!(
            arrays.rows_json,
            r#"[1,"a,b \"c\"",null,"",{"k": 1},"x|y\\z\nw"],[2,"\"lead",null,"e","str","é"]"#
        );
        let csv = sink_rows(ResultFormat::Csv, &keys, &json, &rows, 10_000);
        assert_eq!(
            csv.text,
            "id,s,n,e,doc,t\n1,\"a,b \"\"c\"\"\",,\"\",\"{\"\"k\"\": 1}\",\"x|y\\z\nw\"\n2,\"\"\"lead\",,e,\"\"\"str\"\"\",é\n"
        );
        assert_eq!(csv.rows_json, arrays.rows_json);
        let markdown = sink_rows(ResultFormat::Markdown, &keys, &json, &rows, 10_000);
        assert_eq!(
            markdown.text,
            r#"|id|s|n|e|doc|t|
|---|---|---|---|---|---|
|1|a,b "c"||""|{"k": 1}|x\|y\\z\nw|
|2|\"lead||e|\"str"|é|
"#
        );
        let objects = sink_rows(ResultFormat::Objects, &keys, &json, &rows, 10_000);
        assert_eq!(objects.rows_json, format!("{},{}", rows[0], rows[1]));
    }

    #[test]
    fn the_budget_counts_formatted_bytes_and_a_refused_row_leaves_no_trace() {
        let row = r#"{"id":1,"label":"abcdefghij"}"#;
        let keys = ["id".to_string(), "label".to_string()];
        let mut csv = RowSink::new(ResultFormat::Csv, &keys, vec![false, false], 30);
        assert!(csv.push(row)); // "id,label\n" (9) + "1,abcdefghij\n" (13)
        assert!(!csv.push(row), "a second row makes 35 bytes");
        assert_eq!(csv.text, "id,label\n1,abcdefghij\n");
        assert_eq!(csv.rows_json, r#"[1,"abcdefghij"]"#);
        let mut objects = RowSink::new(ResultFormat::Objects, &[], Vec::new(), 40);
        assert!(objects.push(row) && !objects.push(row));
        assert_eq!(objects.rows_json, row);
    }

    #[test]
    fn readable_values_only_for_postgis_types() {
        for ty in [
            "int4",
            "text",
            "jsonb",
            "_text",
            "timestamptz",
            "geometry_dump",
        ] {
            assert_eq!(readable_value_sql("v", "pg_catalog", ty), None, "{ty}");
        }
        let geography = readable_value_sql("v", "gis ext", "geography").unwrap();
        assert!(
            geography.contains(r#""gis ext".st_asgeojson(v::"gis ext".geometry, 20"#),
            "{geography}"
        );
        let boxed = readable_value_sql("b", "public", "box3d").unwrap();
        assert!(boxed
            .contains(r#"format('{"xmin":%s,"ymin":%s,"zmin":%s,"xmax":%s,"ymax":%s,"zmax":%s}'"#));
        let array = readable_value_sql("a", "public", "_box2d").unwrap();
        assert!(array.contains("unnest(a) WITH ORDINALITY"), "{array}");
        assert!(array.contains(r#""public".st_xmin(mcp_e.v)"#), "{array}");
        assert!(readable_value_sql("r", "public", "raster")
            .unwrap()
            .contains("st_metadata(r)"));
    }

    #[test]
    fn guard_returns_the_statement_without_its_terminator() {
        assert_eq!(check_sql("SELECT 1 ;  ", &policy()).unwrap(), "SELECT 1");
        assert_eq!(
            check_sql("SELECT ';' ; -- done", &policy()).unwrap(),
            "SELECT ';'"
        );
        assert_eq!(
            check_sql("SELECT 1 -- note", &policy()).unwrap(),
            "SELECT 1 -- note"
        );
    }

    #[test]
    fn lexer_understands_literals_comments_and_quoted_names() {
        let (tokens, starts) =
            lex("SELECT a.\"B\"\"c\" FROM t -- x\n/* a /* b */ c */ WHERE s = E'\\'' || $q$;$q$")
                .unwrap();
        assert_eq!(tokens[0], Tok::Word("select".into()));
        assert!(tokens.contains(&Tok::Quoted("B\"c".into())));
        assert!(!tokens.contains(&Tok::Semicolon));
        assert_eq!(tokens.iter().filter(|t| **t == Tok::Literal).count(), 2);
        assert_eq!(starts.len(), tokens.len());
        assert_eq!(
            lex("U&\"d!0061t!+000061\" UESCAPE '!'").unwrap().0,
            vec![Tok::Quoted("data".into())]
        );
    }

    /// Deterministic fuzzing: no input may panic or hang the lexer or the guard.
    #[test]
    fn guard_survives_arbitrary_input() {
        let pieces = [
            "SELECT",
            "select",
            " ",
            "'",
            "''",
            "\"",
            "$$",
            "$a$",
            "$1",
            "--",
            "\n",
            "/*",
            "*/",
            "(",
            ")",
            ";",
            ",",
            ".",
            "E'",
            "\\",
            "U&\"",
            "UESCAPE",
            "'!'",
            "with",
            "as",
            "for",
            "update",
            "pg_sleep",
            "repeat",
            "1e9",
            "é",
            "\u{0}",
            "into",
            "x",
            "0",
            "::",
            "delete",
            "materialized",
            "not",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let started = Instant::now();
        for _ in 0..20_000 {
            let mut sql = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                sql.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            let _ = check_sql(&sql, &policy());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the guard is pathologically slow"
        );
    }

    #[test]
    fn origins_allow_loopback_on_any_port_and_listed_extras() {
        let extra = vec!["https://claude.ai".to_string()];
        for ok in [
            "http://localhost",
            "http://localhost:1234",
            "http://127.0.0.1",
            "http://[::1]:5",
            "https://claude.ai",
        ] {
            assert!(origin_allowed(ok, &extra), "{ok}");
        }
        for bad in [
            "http://evil.example.com",
            "http://localhost.evil.com",
            "http://127.0.0.1.nip.io",
            "null",
            "http://localhost:x",
        ] {
            assert!(!origin_allowed(bad, &extra), "{bad}");
        }
    }

    #[test]
    fn hosts_match_by_name_port_or_wildcard() {
        let allowed = vec![
            "localhost".to_string(),
            "mcp.example.org:443".to_string(),
            "[::1]".to_string(),
            "box:*".to_string(),
        ];
        assert!(host_allowed("localhost:8892", &allowed));
        assert!(host_allowed("[::1]:8892", &allowed));
        assert!(host_allowed("mcp.example.org:443", &allowed));
        assert!(host_allowed("box:1", &allowed));
        assert!(!host_allowed("mcp.example.org:80", &allowed));
        assert!(!host_allowed("evil.example.com", &allowed));
    }

    #[test]
    fn header_values_decode_base64_form() {
        assert_eq!(decode_header_value("query").as_deref(), Some("query"));
        assert_eq!(
            decode_header_value("=?base64?cXVlcnk=?=").as_deref(),
            Some("query")
        );
        assert_eq!(decode_header_value("=?base64?***?="), None);
        // padding optional, URL-safe alphabet accepted: "é?" is w6k/ (standard) or w6k_ (URL-safe)
        assert_eq!(
            decode_header_value("=?base64?cXVlcnk?=").as_deref(),
            Some("query")
        );
        assert_eq!(
            decode_header_value("=?base64?w6k/?=").as_deref(),
            Some("é?")
        );
        assert_eq!(
            decode_header_value("=?base64?w6k_?=").as_deref(),
            Some("é?")
        );
    }

    #[test]
    fn arguments_are_checked_against_their_kinds() {
        static PARAMS: &[Param] = &[
            Param {
                name: "sql",
                kind: ParamKind::Text { default: None },
                required: true,
                description: "",
            },
            Param {
                name: "n",
                kind: ParamKind::Integer {
                    default: 20,
                    min: 1,
                },
                required: false,
                description: "",
            },
            Param {
                name: "analyze",
                kind: ParamKind::Flag { default: false },
                required: false,
                description: "",
            },
            Param {
                name: "format",
                kind: ParamKind::Choice {
                    choices: &["objects", "csv"],
                    default: "objects",
                },
                required: false,
                description: "",
            },
            Param {
                name: "columns",
                kind: ParamKind::Names {
                    max: 2,
                    choices: &[],
                },
                required: false,
                description: "",
            },
        ];
        let tool = ToolSpec {
            name: "t",
            title: "",
            description: "",
            params: PARAMS,
            output_schema: || json!({}),
            run: |_, _| Err(ToolFailure::NotFound(String::new())),
        };
        let check = |args: Value| validate_arguments(&tool, Some(&args)).map_err(|e| e.message);
        let defaults = check(json!({ "sql": "x" })).unwrap();
        assert_eq!(defaults.integer("n"), 20);
        assert!(!defaults.flag("analyze"));
        assert_eq!(defaults.text("format"), Some("objects"));
        assert_eq!(defaults.names("columns"), None);
        let given =
            check(json!({ "sql": "x", "analyze": true, "format": "csv", "columns": ["a", "b"] }))
                .unwrap();
        assert!(given.flag("analyze"));
        assert_eq!(given.text("format"), Some("csv"));
        assert_eq!(given.names("columns"), Some(vec!["a", "b"]));
        for (args, error) in [
            (json!({}), "t: missing required argument \"sql\""),
            (json!({ "sql": 1 }), "t: sql must be a string"),
            (json!({ "sql": "x", "n": 0 }), "t: n must be at least 1"),
            (json!({ "sql": "x", "n": "5" }), "t: n must be an integer"),
            (
                json!({ "sql": "x", "analyze": "yes" }),
                "t: analyze must be true or false",
            ),
            (
                json!({ "sql": "x", "format": "xml" }),
                "t: format must be one of objects, csv",
            ),
            (
                json!({ "sql": "x", "columns": ["a", "b", "c"] }),
                "t: columns must be a list of at most 2 strings",
            ),
            (
                json!({ "sql": "x", "columns": [1] }),
                "t: columns must be a list of at most 2 strings",
            ),
            (
                json!({ "sql": "x".repeat(MAX_TEXT_ARGUMENT_CHARS + 1) }),
                "t: sql must be at most 32768 characters (a longer text is refused to keep every \
                 request's memory bounded)",
            ),
            (
                json!({ "sql": "x", "columns": ["x".repeat(MAX_TEXT_ARGUMENT_CHARS + 1)] }),
                "t: columns must be a list of at most 2 strings",
            ),
            (
                json!({ "sql": "x", "other": 1 }),
                "t: unknown argument \"other\" (expected: sql, n, analyze, format, columns, database)",
            ),
        ] {
            assert_eq!(check(args).err().as_deref(), Some(error));
        }
        let schema = input_schema(&tool);
        assert_eq!(
            schema["properties"]["format"]["enum"],
            json!(["objects", "csv"])
        );
        assert_eq!(schema["properties"]["columns"]["maxItems"], json!(2));
        assert_eq!(schema["required"], json!(["sql"]));
    }

    #[test]
    fn duplicate_columns_get_distinct_keys() {
        let columns: Vec<(String, String)> = ["a", "a", "a_2", "b"]
            .iter()
            .map(|n| (n.to_string(), "int4".to_string()))
            .collect();
        assert_eq!(unique_column_keys(&columns), vec!["a", "a_3", "a_2", "b"]);
        assert_eq!(display_type_name("_int4"), "int4[]");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn modern_results_gain_result_type_and_server_info() {
        let fields = modern_result_fields(Some("prod replica"));
        let empty: Value =
            serde_json::from_str(&with_modern_result_fields("{}".into(), &fields)).unwrap();
        assert_eq!(empty["resultType"], "complete");
        let full: Value = serde_json::from_str(&with_modern_result_fields(
            r#"{"tools":[]}"#.into(),
            &fields,
        ))
        .unwrap();
        assert_eq!(full["tools"], json!([]));
        assert_eq!(
            full["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            SERVER_NAME
        );
        assert_eq!(
            full["_meta"]["io.modelcontextprotocol/serverInfo"]["title"],
            "Analytics (read-only PostgreSQL): prod replica"
        );
    }

    fn config_with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env(&move |name: &str| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn config_errors_name_the_variable() {
        let url = ("DATABASE_URL", "postgresql://u:p@127.0.0.1:5432/db");
        assert!(config_with(&[]).unwrap_err().0.contains("DATABASE_URL"));
        let cases = [
            ("MCP_PORT", "abc", "MCP_PORT"),
            ("MCP_POOL_MAX", "0", "MCP_POOL_MAX"),
            ("MCP_LOG_FORMAT", "xml", "MCP_LOG_FORMAT"),
            ("MCP_AUTH_TOKENS", "broken", "MCP_AUTH_TOKENS"),
            ("MCP_HOST", "0.0.0.0", "MCP_AUTH_TOKENS"),
            ("MCP_MAX_BATCH", "0", "MCP_MAX_BATCH"),
            (
                "MCP_MAX_INFLIGHT_PER_CALLER",
                "0",
                "MCP_MAX_INFLIGHT_PER_CALLER",
            ),
            ("MCP_RATE_PER_CALLER", "-1", "MCP_RATE_PER_CALLER"),
        ];
        for (name, value, named) in cases {
            let error = config_with(&[url, (name, value)]).unwrap_err().0;
            assert!(error.contains(named), "{name}={value}: {error}");
        }
        let ok = config_with(&[url, ("MCP_HOST", "0.0.0.0"), ("MCP_AUTH_TOKENS", "a:b")]).unwrap();
        assert_eq!((ok.port, ok.pool_max, ok.max_rows), (8892, 8, 10_000));
        assert_eq!(
            (ok.max_batch, ok.max_inflight_per_caller, ok.rate_per_caller),
            (20, 4, 0)
        );
        let share = |pool: &str| {
            config_with(&[url, ("MCP_POOL_MAX", pool)])
                .unwrap()
                .max_inflight_per_caller
        };
        assert_eq!((share("1"), share("3"), share("9")), (1, 1, 4));
        assert_eq!(
            config_with(&[url, ("MCP_HOST", "::1")])
                .unwrap()
                .bind_address(),
            "[::1]:8892"
        );
    }

    #[test]
    fn help_lists_every_variable() {
        let help = help_text();
        for (name, _, _) in ENV_VARS {
            assert!(help.contains(name), "{name}");
        }
    }

    #[test]
    fn request_heads_are_limited() {
        let status = |head: &str| match parse_head(head.as_bytes()) {
            Err(ReadError::Reject(response)) => response.status,
            Ok(Some(_)) => 200,
            Ok(None) => 0,
            Err(ReadError::Gone) => 1,
        };
        assert_eq!(
            status("POST /mcp HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            200
        );
        assert_eq!(status("POST /mcp HTTP/1.1\r\nContent-Length: 5\r\n"), 0);
        assert_eq!(
            status("POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            status("POST /mcp HTTP/1.1\r\nContent-Length: 100000000000\r\n\r\n"),
            413
        );
        assert_eq!(
            status("POST /mcp HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST /mcp HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        let many: String = (0..150).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
        assert_eq!(status("\x01\x02 garbage\r\n\r\n"), 400);
    }

    #[test]
    fn keep_alive_follows_the_http_version() {
        let request = |http10: bool, connection: Option<&str>| Request {
            http10,
            headers: connection
                .map(|c| vec![("connection".to_string(), c.to_string())])
                .unwrap_or_default(),
            ..Request::default()
        };
        assert!(request(false, None).wants_keep_alive());
        assert!(!request(false, Some("close")).wants_keep_alive());
        assert!(!request(true, None).wants_keep_alive());
        assert!(request(true, Some("Keep-Alive")).wants_keep_alive());
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let now = rfc3339_now();
        assert_eq!(now.len(), 24, "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T');
    }

    #[test]
    fn audit_sql_is_cut_to_200_characters() {
        assert_eq!(audit_sql(&"x".repeat(300)).chars().count(), 201);
        assert_eq!(audit_sql(" SELECT 1 "), "SELECT 1");
    }

    #[test]
    fn json_strings_escape_like_serde_json() {
        for text in [
            "",
            "plain",
            "quote \" and \\ back",
            "lines\n\r\ttab",
            "ctl \u{1} \u{1f}",
            "ünïcødé ✓ 😀",
            "a clean run of more than eight bytes, \"quoted\", \\, \u{7}, ünïcødé ✓ 😀, end",
            "\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}",
        ] {
            let mut ours = String::new();
            push_json_string(&mut ours, text);
            assert_eq!(ours, Value::String(text.to_string()).to_string());
        }
    }

    #[test]
    fn a_panicking_handler_becomes_an_internal_error() {
        let result = run_caught("tools/call", || panic!("boom"));
        let error = result.expect_err("a panic must not look like success");
        assert_eq!(error.code, -32603);
        assert!(!error.message.contains("boom"), "internals stay in the log");
        assert_eq!(
            run_caught("ping", || Ok("{}".into())).ok().as_deref(),
            Some("{}")
        );
    }

    /// A certificate made with openssl for these tests: ecdsa-with-SHA384, issued by
    /// "O=Example, CN=Example Test CA" to CN=db.example.com, 2026-12-01 until 2036-11-28.
    const TEST_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBkDCCATegAwIBAgIBATAKBggqhkjOPQQDAzAsMRAwDgYDVQQKDAdFeGFtcGxl
MRgwFgYDVQQDDA9FeGFtcGxlIFRlc3QgQ0EwHhcNMjYxMjAxMTAwMDQxWhcNMzYx
MTI4MTAwMDQxWjAZMRcwFQYDVQQDDA5kYi5leGFtcGxlLmNvbTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABMhzyxO0ddanf7WzciWNtFnIMdoY4p1FkoCZnVMD0FqU
yAW9xUHhdeKzpN+Yk3myIceHFE+ys4bZeM6USEgQBtajXTBbMBkGA1UdEQQSMBCC
DmRiLmV4YW1wbGUuY29tMB0GA1UdDgQWBBSBYIGZifvS7mPpAz9mbFsBwPyI4TAf
BgNVHSMEGDAWgBTvpsuxVNxh2PVQM7/rCvmPNWh67zAKBggqhkjOPQQDAwNHADBE
AiAhoDLKoqoff96Puuq/IXT2BAudOyuMH76miGGnnOc+VgIgRvlo7eyqIWmEidzH
CkEpgUtEWNoaFY+f6dB2brfYBAw=
-----END CERTIFICATE-----
";

    fn test_cert_der() -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(TEST_CERT_PEM.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn certificate_summary_reads_names_and_dates() {
        let summary = CertificateSummary::parse(&test_cert_der()).unwrap();
        assert_eq!(summary.issuer, "O=Example, CN=Example Test CA");
        assert_eq!(summary.subject, "CN=db.example.com");
        assert_eq!(summary.not_before, "2026-12-01 10:00:41 UTC");
        assert_eq!(summary.not_after, "2036-11-28 10:00:41 UTC");
        // truncated or garbage input is no certificate, never a panic
        let der = test_cert_der();
        for cut in [0, 1, 10, der.len() / 2, der.len() - 1] {
            assert!(
                CertificateSummary::parse(&der[..cut]).is_none(),
                "cut at {cut}"
            );
        }
        assert!(CertificateSummary::parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        let generalized = der_time((0x18, untrusted::Input::from(b"20510102030405Z")));
        assert_eq!(generalized, "2051-01-02 03:04:05 UTC");
    }

    #[test]
    fn channel_binding_hashes_the_certificate_with_its_signature_hash() {
        // ecdsa-with-SHA384: RFC 5929 tls-server-end-point is the SHA-384 of the DER (as
        // `openssl x509 -outform der | sha384sum` computes it)
        assert_eq!(
            hex(&tls_server_end_point(&test_cert_der()).unwrap()),
            "0b58ae992d78bc3993016d7ba1abbaa1d262e77a21bd6a3af56933d25430625b4c21d15d3f5ee584d1237d605c8263db"
        );
        assert_eq!(tls_server_end_point(b"not a certificate"), None);
    }

    #[test]
    fn tls_settings_leave_the_dsn_and_the_rest_stays() {
        let url = split_dsn("postgresql://u:p?w@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fca.pem").unwrap();
        assert_eq!(url.rest, "postgresql://u:p?w@h:5432/db?application_name=x");
        assert_eq!(
            url.own.get("sslmode").map(String::as_str),
            Some("verify-full")
        );
        assert_eq!(
            url.own.get("sslrootcert").map(String::as_str),
            Some("/ca.pem")
        );
        let bare = split_dsn("postgres://h/db").unwrap();
        assert_eq!((bare.rest.as_str(), bare.own.len()), ("postgres://h/db", 0));
        let kv =
            split_dsn(r"host=h  password = 'it''s \' a\\b' sslmode=require dbname=d").unwrap_err();
        assert!(kv.contains("missing"), "{kv}"); // '' is not an escape in libpq's grammar
        let kv = split_dsn(r"host=h password = 'it\'s a\\b' sslmode=require dbname=d").unwrap();
        assert_eq!(kv.rest, r"host='h' password='it\'s a\\b' dbname='d'");
        assert_eq!(kv.own.get("sslmode").map(String::as_str), Some("require"));
        let parsed: postgres::Config = kv.rest.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"it's a\\b"[..]));
        assert!(split_dsn("host=h sslpassword=x")
            .unwrap_err()
            .contains("encrypted client keys"));
        assert!(split_dsn("host=h password='open")
            .unwrap_err()
            .contains("unterminated"));
        assert!(split_dsn("postgresql://h/db?sslmode=%zz")
            .unwrap_err()
            .contains("percent"));
    }

    #[test]
    fn libpq_rules_for_tls_settings() {
        let settings = |dsn: &str, vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let env =
                move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            DbSettings::from_env(dsn, &env)
        };
        let url = "postgresql://u:p@db.example.com/app";
        assert_eq!(settings(url, &[]).unwrap().sslmode, SslMode::Prefer);
        assert_eq!(
            settings(url, &[("PGSSLMODE", "require")]).unwrap().sslmode,
            SslMode::Require
        );
        let dsn_wins = settings(
            &format!("{url}?sslmode=disable"),
            &[("PGSSLMODE", "require")],
        );
        assert_eq!(dsn_wins.unwrap().sslmode, SslMode::Disable);
        let cases = [
            ("?sslmode=verify", "DATABASE_URL sslmode=\"verify\""),
            (
                "?sslmode=require&sslrootcert=system",
                "weak sslmode \"require\"",
            ),
            (
                "?sslnegotiation=direct",
                "weak sslmode \"prefer\" may not be used with sslnegotiation=direct",
            ),
            ("?sslmode=disable&channel_binding=require", "needs TLS"),
            ("?sslmode=verify-ca", "root certificate file"),
            ("?sslkey=/k.pem", "sslkey is set but sslcert is not"),
            (
                "?ssl_min_protocol_version=TLSv1.3&ssl_max_protocol_version=TLSv1.2",
                "above",
            ),
            ("?sslsni=2", "use 1, 0"),
        ];
        for (query, needle) in cases {
            let error =
                settings(&format!("{url}{query}"), &[("HOME", "/nonexistent")]).unwrap_err();
            assert!(error.contains(needle), "{query}: {error}");
        }
        let error = settings(url, &[("PGSSLMODE", "bogus")]).unwrap_err();
        assert!(error.starts_with("PGSSLMODE=\"bogus\""), "{error}");
        let unix = settings("host=/run/postgresql dbname=app sslmode=require", &[]).unwrap();
        assert!(unix.unix_only && unix.local_only && !unix.warnings.is_empty());
        assert!(!settings(url, &[]).unwrap().local_only);
        let secret =
            settings(url, &[("MCP_DATABASE_PASSWORD_FILE", "/nonexistent/pw")]).unwrap_err();
        assert!(secret.contains("keep one"), "{secret}");
    }

    #[test]
    fn pgpass_lines_and_matching() {
        assert_eq!(
            split_pgpass_line(r"h\:1:*:db:u:p\\w:x"),
            ["h:1", "*", "db", "u", r"p\w:x"]
        );
        let path = std::env::temp_dir().join(format!("amcp-pgpass-{}", std::process::id()));
        std::fs::write(
            &path,
            "# comment\nother:*:*:*:no\n*:5432:app:alice:yes\n*:*:*:*:fallback\n",
        )
        .unwrap();
        let config: postgres::Config = "host=db.example.com user=alice dbname=app".parse().unwrap();
        assert_eq!(pgpass_lookup(&path, &config).as_deref(), Some("yes"));
        let config: postgres::Config = "host=db.example.com user=bob dbname=app port=6432"
            .parse()
            .unwrap();
        assert_eq!(pgpass_lookup(&path, &config).as_deref(), Some("fallback"));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn json_is_measured_exactly_before_parsing() {
        fn count(value: &Value) -> usize {
            1 + match value {
                Value::Array(items) => items.iter().map(count).sum(),
                Value::Object(map) => map.values().map(|v| 1 + count(v)).sum(),
                _ => 0,
            }
        }
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        fn build(depth: u32, next: &mut dyn FnMut() -> u64) -> Value {
            match next() % if depth > 4 { 5 } else { 7 } {
                0 => Value::Null,
                1 => json!(next().is_multiple_of(2)),
                2 => json!((next() % 2_000_000) as i64 - 1_000_000),
                3 => json!(-1.5e-7),
                4 => json!(["", "a\"b", "\\", "\u{1}", ",:[]{}", "é😀"][next() as usize % 6]),
                5 => Value::Array((0..next() % 4).map(|_| build(depth + 1, next)).collect()),
                _ => Value::Object(
                    (0..next() % 4)
                        .map(|k| (format!("k{k}\"[,"), build(depth + 1, next)))
                        .collect(),
                ),
            }
        }
        for round in 0..2000 {
            let value = build(0, &mut next);
            let text = if round % 2 == 0 {
                value.to_string()
            } else {
                serde_json::to_string_pretty(&value).unwrap()
            };
            let shape = measure_json(text.as_bytes());
            assert_eq!(shape.values, count(&value), "{text}");
            let messages = value.as_array().map(Vec::len);
            assert_eq!(shape.batch_messages, messages, "{text}");
        }
    }

    #[test]
    fn postgres_json_is_compacted_without_parsing() {
        let padded = "{\"a\" : 1, \"b\" : [ {\"c d\" : \"e \\\" f\"}, \n null ], \"é\" : \"\\\\\"}";
        let value: Value = serde_json::from_str(padded).unwrap();
        assert_eq!(compact_json(padded), value.to_string());
        assert_eq!(
            compact_json(r#"{"k" : "  spaced  "}"#),
            r#"{"k":"  spaced  "}"#
        );
    }

    #[test]
    fn bodies_over_the_limits_are_refused_before_parsing() {
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let batch = |n: usize| format!("[{}]", vec![call; n].join(","));
        let metrics = Metrics::default();
        let parse = |body: &[u8]| parse_body(body, 20, &metrics);
        assert!(parse(batch(20).as_bytes()).is_ok());
        let error = parse(batch(21).as_bytes()).unwrap_err();
        assert_eq!((error.code, error.status), (-32600, 400));
        assert!(
            error
                .message
                .contains("batch of 21 messages refused: at most 20"),
            "{}",
            error.message
        );
        let zeros = format!(r#"{{"x":[{}]}}"#, vec!["0"; MAX_JSON_VALUES].join(","));
        assert!(parse(zeros.as_bytes())
            .unwrap_err()
            .message
            .contains("more than 4096 JSON values"));
        assert_eq!(parse(b"{\"jsonrpc\":").unwrap_err().code, -32700);
        let counted = lock(&metrics.limits).clone();
        assert_eq!(
            counted,
            BTreeMap::from([("json_values", 1), ("max_batch", 1)])
        );
    }

    #[test]
    fn echoes_are_cut_to_an_excerpt() {
        assert_eq!(excerpt("query", 64), "query");
        assert_eq!(excerpt(&"é".repeat(100), 3), "ééé…");
        let huge = RpcError::new(-32601, "x".repeat(100_000)).to_json(&json!(1));
        assert!(huge.len() < MAX_ERROR_TEXT_CHARS + 100, "{}", huge.len());
        assert!(!too_long(&"x".repeat(MAX_TEXT_ARGUMENT_CHARS)));
        assert!(too_long(&"x".repeat(MAX_TEXT_ARGUMENT_CHARS + 1)));
        assert!(
            !too_long(&"é".repeat(MAX_TEXT_ARGUMENT_CHARS)),
            "characters, not bytes"
        );
    }

    /// Polls (with a deadline) until `admission` shows `waiting` queued calls.
    fn wait_for_waiters(admission: &Admission, waiting: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while admission.usage().waiting != waiting {
            assert!(Instant::now() < deadline, "waiters never queued");
            std::thread::yield_now();
        }
    }

    #[test]
    fn admission_caps_each_analyst_and_refuses_with_the_right_reason() {
        let admission = Admission::new(2, 1);
        let soon = || Instant::now() + Duration::from_millis(20);
        let a = admission.enter(Some("a"), soon()).unwrap();
        // A free connection is left, but "a" holds its whole share: it waits for its own call.
        assert_eq!(
            admission.enter(Some("a"), soon()).err(),
            Some(NotAdmitted::ShareFull)
        );
        let b = admission.enter(Some("b"), soon()).unwrap();
        assert_eq!(
            admission.enter(Some("c"), soon()).err(),
            Some(NotAdmitted::PoolBusy)
        );
        assert!(admission.try_enter().is_none());
        let usage = admission.usage();
        assert_eq!((usage.in_use, usage.waiting, usage.analysts), (2, 0, 2));
        drop((a, b));
        let usage = admission.usage();
        assert_eq!(
            (usage.in_use, usage.analysts),
            (0, 0),
            "idle analysts are forgotten"
        );
        // No analysts to share between: the whole pool.
        let all: Vec<_> = (0..2)
            .map(|_| admission.enter(None, soon()).unwrap())
            .collect();
        assert_eq!(admission.usage().analysts, 0);
        drop(all);
        assert!(admission.try_enter().is_some());
    }

    #[test]
    fn the_probe_may_use_a_connection_no_eligible_call_waits_for() {
        let admission = Admission::new(2, 1);
        let a = admission.enter(Some("a"), Instant::now()).unwrap();
        let long = Instant::now() + Duration::from_secs(30);
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| admission.enter(Some("a"), long).is_ok());
            wait_for_waiters(&admission, 1);
            assert!(
                admission.try_enter().is_some(),
                "the free connection is not a's to take"
            );
            drop(a);
            assert!(
                waiter.join().unwrap(),
                "a's call runs once its first one ends"
            );
        });
    }

    #[test]
    fn a_freed_connection_goes_to_the_analyst_holding_fewest() {
        let admission = Admission::new(2, 2);
        let long = || Instant::now() + Duration::from_secs(30);
        let a1 = admission.enter(Some("a"), long()).unwrap();
        let a2 = admission.enter(Some("a"), long()).unwrap();
        let order = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            let admitted = |who: &'static str| {
                let permit = admission.enter(Some(who), long()).unwrap();
                lock(&order).push(who);
                drop(permit);
            };
            scope.spawn(move || admitted("a"));
            wait_for_waiters(&admission, 1);
            scope.spawn(move || admitted("b"));
            wait_for_waiters(&admission, 2);
            assert_eq!(admission.usage().waiting_for_own, 1);
            drop(a1); // "a" still holds one, "b" none: b goes first though it queued later
            let deadline = Instant::now() + Duration::from_secs(10);
            while lock(&order).is_empty() {
                assert!(Instant::now() < deadline, "nobody was admitted");
                std::thread::yield_now();
            }
            assert_eq!(lock(&order)[0], "b");
            drop(a2);
        });
        assert_eq!(*lock(&order), ["b", "a"]);
        assert_eq!(admission.usage().in_use, 0);
    }

    #[test]
    fn rate_limit_is_a_token_bucket_per_analyst() {
        let rates = RateLimiter::new(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(rates.take("a", t0), Ok(()));
        }
        assert_eq!(rates.take("a", t0), Err(20), "one call per 20 s refills");
        assert_eq!(rates.take("b", t0), Ok(()), "each analyst has a bucket");
        assert_eq!(rates.take("a", t0 + Duration::from_secs(19)), Err(1));
        assert_eq!(rates.take("a", t0 + Duration::from_secs(20)), Ok(()));
        // b's bucket (2 of 3 left at t0) is full again 20 s later; a's is still refilling.
        assert_eq!(rates.tracked(t0 + Duration::from_secs(21)), 1);
        assert_eq!(
            rates.tracked(t0 + Duration::from_secs(81)),
            0,
            "full buckets are forgotten"
        );
        let off = RateLimiter::new(0);
        assert!((0..1000).all(|_| off.take("a", t0).is_ok()));
        assert_eq!(off.tracked(t0), 0);
    }

    #[test]
    fn semaphore_bounds_and_drains() {
        let semaphore = Semaphore::new(1);
        let first = semaphore.try_acquire();
        assert!(first.is_some());
        assert!(semaphore.try_acquire().is_none());
        assert!(!semaphore.wait_idle(Instant::now() + Duration::from_millis(10)));
        drop(first);
        assert!(semaphore.wait_idle(Instant::now()));
        assert!(semaphore.try_acquire().is_some());
    }

    fn test_key() -> AuditKey {
        use hmac::KeyInit;
        AuditKey(HmacSha256::new_from_slice(&[7u8; 32]).unwrap())
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        use hmac::KeyInit;
        let key = AuditKey(HmacSha256::new_from_slice(&[0x0b; 20]).unwrap());
        assert_eq!(
            hex(&key.tag(b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn sealed_lines_open_and_any_change_breaks_them() {
        let key = test_key();
        let mut fields = Map::new();
        fields.insert("event".into(), json!("call"));
        fields.insert("sql".into(), json!("SELECT 'é\n'"));
        let (line, tag) = seal_line(&key, 5, &GENESIS_TAG, &fields);
        assert!(line.ends_with("\"}\n") && !line[..line.len() - 1].contains('\n'));
        let bytes = line.trim_end().as_bytes();
        let opened = open_line(&key, bytes).unwrap();
        assert_eq!((opened.seq, opened.prev, opened.tag), (5, GENESIS_TAG, tag));
        assert_eq!(opened.fields["sql"], json!("SELECT 'é\n'"));
        for i in 0..bytes.len() {
            let mut edited = bytes.to_vec();
            edited[i] ^= 0x01;
            assert!(
                open_line(&key, &edited).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
        assert!(open_line(&key, &bytes[..bytes.len() - 1]).is_err());
        let (other, _) = seal_line(&key, 5, &tag, &fields);
        assert_ne!(other, line, "prev is part of what the tag covers");
    }

    #[test]
    fn last_line_and_incomplete_tail_are_found() {
        let dir = std::env::temp_dir().join(format!("amcp-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tail.log");
        let long = "x".repeat(200_000);
        for (content, last, complete) in [
            ("".to_string(), None, 0),
            ("partial".to_string(), None, 0),
            ("one\n".to_string(), Some("one"), 4),
            ("one\ntwo\n".to_string(), Some("two"), 8),
            ("one\ntwo\nthr".to_string(), Some("two"), 8),
            (format!("one\n{long}\n"), Some(long.as_str()), 200_005),
        ] {
            std::fs::write(&path, &content).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let (line, len) = read_last_line(&file, content.len() as u64).unwrap();
            assert_eq!(line.as_deref(), last.map(str::as_bytes), "{content:.20}");
            assert_eq!(len, complete);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn analyst_roles_map_explicitly_then_by_pattern() {
        let env = |list: &'static str| {
            move |name: &str| (name == "MCP_ANALYST_ROLES").then(|| list.to_string())
        };
        let roles = AnalystRoles::from_env(&env("bob=reader_bob, analyst_{name}"))
            .unwrap()
            .unwrap();
        assert_eq!(roles.role_for("bob").as_deref(), Some("reader_bob"));
        assert_eq!(
            roles.role_for("alice@example.com").as_deref(),
            Some("analyst_alice@example.com")
        );
        let explicit = AnalystRoles::from_env(&env("bob=reader_bob"))
            .unwrap()
            .unwrap();
        assert_eq!(explicit.role_for("alice"), None);
        let alice = Caller::new("alice", "bearer");
        assert!(matches!(
            explicit.resolve(&alice),
            Err(ToolFailure::Forbidden(_))
        ));
        let long = Caller::new(&"x".repeat(60), "bearer");
        assert!(matches!(
            roles.resolve(&long),
            Err(ToolFailure::Forbidden(_))
        ));
        for bad in ["alice", "a_{name},b_{name}", "a=", "a=r,a=s"] {
            assert!(AnalystRoles::from_env(&env(bad)).is_err(), "{bad}");
        }
        assert_eq!(AnalystRoles::from_env(&|_: &str| None).unwrap(), None);
    }

    #[test]
    fn readable_clause_renames_its_alias() {
        assert_eq!(readable_schema_sql("n"), READABLE);
        let other = readable_schema_sql("fn");
        assert!(
            other.contains("has_schema_privilege(fn.oid")
                && other.contains("ELSE fn.nspname = ANY")
        );
        assert!(!other.contains(" n.") && !other.contains("(n."));
    }

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_call() {
        for bytes in [&b""[..], b"f", b"fo", b"foo", b"foob", "ünï🚀".as_bytes()] {
            assert_eq!(
                base64_decode(&base64url_encode(bytes)).as_deref(),
                Some(bytes)
            );
        }
        assert!(!base64url_encode(&[0xfb, 0xff]).contains(['+', '/', '=']));
        let args =
            |cursor: &str| Arguments(Map::from_iter([("cursor".to_string(), json!(cursor))]));
        let cursor = encode_cursor("list_tables", &["fleet"], &json!("trips"));
        let key = cursor_key(&args(&cursor), "list_tables", &["fleet"]).unwrap();
        assert_eq!(key, Some(json!("trips")));
        for (tool, scope) in [
            ("list_tables", &["other"][..]),
            ("describe_table", &["fleet"][..]),
            ("list_tables", &[][..]),
        ] {
            assert!(matches!(
                cursor_key(&args(&cursor), tool, scope),
                Err(ToolFailure::InvalidArgument(_))
            ));
        }
        for garbage in ["", "***", "bnVsbA", "WzFd"] {
            assert!(matches!(
                cursor_key(&args(garbage), "list_tables", &["fleet"]),
                Err(ToolFailure::InvalidArgument(_))
            ));
        }
        let numbered = encode_cursor("describe_table", &["a", "b"], &json!(12));
        assert_eq!(
            cursor_number(&args(&numbered), "describe_table", &["a", "b"]).unwrap(),
            Some(12)
        );
        let negative = encode_cursor("describe_table", &["a", "b"], &json!(-1));
        assert!(cursor_number(&args(&negative), "describe_table", &["a", "b"]).is_err());
    }

    #[test]
    fn relation_names_parse_like_sql_identifiers_without_folding() {
        let ok = |text: &str| parse_relation_name(text).unwrap();
        assert_eq!(ok("fleet.trips"), (Some("fleet".into()), "trips".into()));
        assert_eq!(ok(" trips "), (None, "trips".into()));
        assert_eq!(
            ok("Sales.Customers"),
            (Some("Sales".into()), "Customers".into())
        );
        assert_eq!(
            ok(r#""Sales"."Cust.omers""#),
            (Some("Sales".into()), "Cust.omers".into())
        );
        assert_eq!(
            ok(r#"reporting."weird""name""#),
            (Some("reporting".into()), "weird\"name".into())
        );
        for bad in [
            "",
            ".",
            "a.",
            ".b",
            "a.b.c",
            r#""a"#,
            r#"a"b.c"#,
            r#""a"b.c"#,
            r#""".x"#,
        ] {
            assert!(parse_relation_name(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn join_paths_are_shortest_in_either_direction() {
        let edge = |constraint, child, parent| FkEdge {
            constraint,
            child,
            parent,
        };
        // 1 → 2 → 3, 4 → 3, 5 → 1 and 5 ← 3 (a cycle 1 → 2 → 3 → 5 → 1), 2 → 2 (self)
        let edges = [
            edge(10, 1, 2),
            edge(11, 2, 3),
            edge(12, 4, 3),
            edge(13, 5, 1),
            edge(14, 3, 5),
            edge(15, 2, 2),
        ];
        let route = |from, to, hops| -> Vec<Vec<(u32, bool)>> {
            shortest_fk_paths(&edges, from, to, hops)
                .iter()
                .map(|p| {
                    p.iter()
                        .map(|h| (h.edge.constraint, h.towards_parent))
                        .collect()
                })
                .collect()
        };
        assert_eq!(route(1, 2, 3), vec![vec![(10, true)]]);
        assert_eq!(route(2, 1, 3), vec![vec![(10, false)]]);
        let mut to_four = route(1, 4, 3);
        to_four.sort();
        assert_eq!(
            to_four,
            vec![
                vec![(10, true), (11, true), (12, false)],
                vec![(13, false), (14, false), (12, false)]
            ]
        );
        assert_eq!(route(1, 4, 2), Vec::<Vec<(u32, bool)>>::new());
        // two shortest ways round the cycle from 1 to 3: through 2, or through 5
        let mut both = route(1, 3, 3);
        both.sort();
        assert_eq!(
            both,
            vec![vec![(10, true), (11, true)], vec![(13, false), (14, false)]]
        );
        assert_eq!(route(2, 2, 3), vec![vec![(15, true)]]);
        assert_eq!(route(1, 1, 3), Vec::<Vec<(u32, bool)>>::new());
        assert_eq!(route(1, 99, 6), Vec::<Vec<(u32, bool)>>::new());
    }

    #[test]
    fn dense_graphs_stop_enumerating() {
        // a ladder of 12 rungs between 0 and 100 has 2^12 shortest paths
        let mut edges = Vec::new();
        let mut constraint = 0;
        let mut previous = vec![0u32];
        for layer in 1..=12u32 {
            let nodes = vec![layer * 10, layer * 10 + 1];
            for from in &previous {
                for to in &nodes {
                    constraint += 1;
                    edges.push(FkEdge {
                        constraint,
                        child: *from,
                        parent: *to,
                    });
                }
            }
            previous = nodes;
        }
        for from in &previous {
            constraint += 1;
            edges.push(FkEdge {
                constraint,
                child: *from,
                parent: 1000,
            });
        }
        assert_eq!(shortest_fk_paths(&edges, 0, 1000, 6).len(), 0);
        let paths = shortest_fk_paths(&edges, 0, 1000, MAX_JOIN_HOPS + 7);
        assert_eq!(paths.len(), MAX_ENUMERATED_PATHS);
        assert!(paths.iter().all(|p| p.len() == 13));
    }

    #[test]
    fn search_terms_escape_like_and_match_plurals() {
        let terms = search_terms("  Fuel Costs ");
        assert_eq!(terms.exact, vec!["fuel costs", "fuel_costs"]);
        assert_eq!(terms.prefix, "fuel\\_costs%");
        assert_eq!(terms.words, vec!["%fuel%", "%cost%"]);
        assert_eq!(search_terms("categories").words, vec!["%category%"]);
        assert_eq!(search_terms("class").words, vec!["%class%"]);
        assert_eq!(search_terms("gas").words, vec!["%gas%"]);
        assert_eq!(
            search_terms("100%_a\\b").words,
            vec!["%100\\%%", "%a\\\\b%"]
        );
        assert_eq!(
            search_terms("fleet.trips").exact,
            vec!["fleet.trips", "fleet_trips"]
        );
    }

    #[test]
    fn plan_summary_ranks_nodes_by_their_own_cost() {
        let plan = json!([{ "Plan": {
            "Node Type": "Hash Join", "Startup Cost": 1.0, "Total Cost": 100.0, "Plan Rows": 10,
            "Hash Cond": "(a.id = b.a_id)",
            "Plans": [
                { "Node Type": "Seq Scan", "Schema": "s", "Relation Name": "big", "Total Cost": 70.0, "Plan Rows": 5000, "Filter": "(x > 1)" },
                { "Node Type": "Hash", "Total Cost": 20.0, "Plan Rows": 10, "Plans": [
                    { "Node Type": "Index Scan", "Schema": "s", "Relation Name": "Small", "Index Name": "small_pkey", "Total Cost": 19.0, "Plan Rows": 10 } ] }
            ] } }]);
        let sizes = [RelationSize {
            schema: "s".into(),
            name: "big".into(),
            rows: Some(50_000.0),
            pages: 400,
            indexes: vec!["big_x btree (x)".into()],
        }];
        let summary = plan_summary(&plan, false, false, &sizes);
        assert_eq!(summary["total_cost"], json!(100.0));
        let top: Vec<(&str, f64)> = summary["most_expensive"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["node"].as_str().unwrap(),
                    n["self_cost"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            top,
            vec![
                ("Seq Scan", 70.0),
                ("Index Scan", 19.0),
                ("Hash Join", 10.0),
                ("Hash", 1.0)
            ]
        );
        assert_eq!(
            summary["most_expensive"][1]["relation"],
            json!("s.\"Small\"")
        );
        assert_eq!(
            summary["most_expensive"][2]["condition"],
            json!("(a.id = b.a_id)")
        );
        assert_eq!(
            summary["seq_scans"],
            json!([{ "relation": "s.big", "relation_rows": 50000, "relation_pages": 400,
            "estimated_rows": 5000, "filter": "(x > 1)", "indexes": ["big_x btree (x)"] }])
        );
        assert!(summary.get("estimate_misses").is_none());
        let mut small = plan.clone();
        drop_node_outputs(&mut small);
        assert_eq!(small, plan);
    }

    // ── OAuth ──

    #[test]
    fn urls_are_split_strictly() {
        let url = split_url("https://claude.ai/api/mcp/auth_callback").unwrap();
        assert_eq!(
            (url.scheme, url.host, url.port),
            ("https", "claude.ai", None)
        );
        assert_eq!(url.path_and_query, "/api/mcp/auth_callback");
        let url = split_url("http://[::1]:8080/cb?x=1").unwrap();
        assert_eq!(
            (url.host, url.port, url.path_and_query),
            ("[::1]", Some(8080), "/cb?x=1")
        );
        for bad in [
            "https://a.example/cb#f",
            "https://user@a.example/cb",
            "javascript:alert(1)",
            "https:///cb",
            "https://a.example:99999/",
            "https://a.exa mple/",
            "ftp://a.example/",
            "https://a\\b.example/",
        ] {
            assert!(split_url(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn redirect_uris_match_exactly_or_on_any_loopback_port() {
        assert!(redirect_uri_allowed(
            "https://claude.ai/api/mcp/auth_callback"
        ));
        assert!(redirect_uri_allowed("http://127.0.0.1:33418/callback"));
        assert!(redirect_uri_allowed("http://localhost/cb"));
        assert!(!redirect_uri_allowed(
            "http://claude.ai/api/mcp/auth_callback"
        ));
        assert!(!redirect_uri_allowed("http://127.0.0.1.example.com/cb"));
        assert!(redirect_uri_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/cb"
        ));
        assert!(!redirect_uri_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/cb2"
        ));
        assert!(!redirect_uri_matches(
            "http://127.0.0.1/cb",
            "http://localhost:5555/cb"
        ));
        assert!(!redirect_uri_matches(
            "https://a.example/cb",
            "https://a.example:443/cb"
        ));
        assert!(!redirect_uri_matches(
            "https://a.example/cb",
            "https://a.example/cb/"
        ));
    }

    #[test]
    fn forms_decode_and_refuse_repeats() {
        let form = parse_form("a=1&b=x+y%21&c=&d").unwrap();
        assert_eq!(form["b"], "x y!");
        assert_eq!((form["c"].as_str(), form["d"].as_str()), ("", ""));
        assert!(parse_form("a=1&a=2").is_err());
        assert!(parse_form("a=%zz").is_err());
        assert!(parse_form("a=%ff").is_err());
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(
            with_query("https://x.example/cb?k=v", &[("code", "a&b")]),
            "https://x.example/cb?k=v&code=a%26b"
        );
        assert_eq!(
            html_escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }

    #[test]
    fn pkce_s256_matches_base64url_sha256() {
        // expected value computed independently with Python's hashlib and base64
        let verifier = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_verifier_matches(
            verifier,
            "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc"
        ));
        assert!(!pkce_verifier_matches(
            verifier,
            "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtd"
        ));
        assert!(!pkce_verifier_matches("short", &b64url(&sha256(b"short"))));
    }

    fn limits(cap: usize) -> OAuthLimits {
        OAuthLimits {
            codes: cap,
            sign_ins: cap,
            addresses: cap,
            documents: cap,
        }
    }

    #[test]
    fn a_full_code_table_lets_the_oldest_go_and_never_accepts_a_code_twice() {
        let ledger = OnceLedger::new(&limits(3));
        let until = now_s() + 60;
        let key = |ms: u64| (ms, table_id(&format!("code-{ms}")));
        for ms in [10, 20, 30] {
            assert_eq!(ledger.use_code(key(ms), until), CodeUse::First);
        }
        // a fourth makes room by letting the oldest go …
        assert_eq!(ledger.use_code(key(40), until), CodeUse::FirstMadeRoom);
        assert_eq!(ledger.sizes().0, 3);
        // … which, and anything older never seen, is refused from then on, never accepted again
        assert_eq!(ledger.use_code(key(10), until), CodeUse::Forgotten);
        assert_eq!(ledger.use_code(key(5), until), CodeUse::Forgotten);
        for ms in [20, 30, 40] {
            assert_eq!(ledger.use_code(key(ms), until), CodeUse::AlreadyUsed);
        }
        // a code older than everything a full table holds is refused rather than let in
        assert_eq!(ledger.use_code(key(15), until), CodeUse::Forgotten);
        assert_eq!(ledger.use_code(key(50), until), CodeUse::FirstMadeRoom);
        assert_eq!(ledger.use_code(key(20), until), CodeUse::Forgotten);
        // expired records go; the floor stays
        let past = now_s() - 1;
        let ledger = OnceLedger::new(&limits(2));
        assert_eq!(ledger.use_code(key(1), past), CodeUse::First);
        assert_eq!(ledger.use_code(key(2), past), CodeUse::First);
        assert_eq!(ledger.use_code(key(3), until), CodeUse::First); // room from the expired
        assert_eq!(ledger.sizes().0, 1);
    }

    #[test]
    fn a_full_sign_in_table_ends_the_oldest_sign_ins() {
        let ledger = OnceLedger::new(&limits(2));
        let until = now_s() + 3600;
        let key = |ms: u64| (ms, table_id(&format!("family-{ms}")));
        let rotated = Rotation::Rotated { made_room: false };
        assert_eq!(ledger.rotate(key(10), 0, until), rotated);
        assert_eq!(ledger.rotate(key(10), 1, until), rotated);
        assert_eq!(ledger.rotate(key(10), 1, until), Rotation::Replayed);
        assert_eq!(ledger.rotate(key(10), 2, until), Rotation::Revoked);
        assert!(ledger.sign_in_ended(key(10)));
        assert!(!ledger.sign_in_ended(key(5))); // never seen, nothing let go yet
        assert_eq!(ledger.rotate(key(20), 0, until), rotated);
        assert_eq!(
            ledger.rotate(key(30), 0, until),
            Rotation::Rotated { made_room: true }
        );
        // the revoked sign-in was the oldest: let go, it stays ended, as does anything older
        assert!(ledger.sign_in_ended(key(10)));
        assert!(ledger.sign_in_ended(key(5)));
        assert_eq!(ledger.rotate(key(10), 5, until), Rotation::Ended);
        assert_eq!(ledger.rotate(key(5), 0, until), Rotation::Ended);
        assert!(!ledger.sign_in_ended(key(20)) && !ledger.sign_in_ended(key(30)));
        assert_eq!(ledger.rotate(key(20), 1, until), rotated);
        assert_eq!(ledger.rotate(key(20), 0, until), Rotation::Replayed);
        assert_eq!(ledger.sizes().1, 2);
    }

    #[test]
    fn a_full_throttle_never_forgets_an_address_and_the_rest_share_one_allowance() {
        let throttle = Throttle::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        for _ in 0..THROTTLE_FAILURES {
            assert!(!throttle.record_failure(a));
        }
        assert!(throttle.blocked(a));
        // one /64 is one address
        assert!(!throttle.record_failure(b));
        assert!(!throttle.record_failure("2001:db8:1:2::ffff".parse().unwrap()));
        assert_eq!(throttle.len(), 2);
        // full: a stays blocked whatever comes; newcomers share one allowance …
        let newcomers = (0..THROTTLE_FAILURES)
            .map(|i| IpAddr::from([198, 51, 100, i as u8]))
            .collect::<Vec<_>>();
        assert!(!throttle.blocked(newcomers[0]));
        for address in &newcomers {
            assert!(throttle.record_failure(*address));
        }
        assert!(throttle.blocked(a));
        assert_eq!(throttle.len(), 2);
        // … so, once it is spent, every address the table has no room for is refused
        assert!(throttle.blocked("203.0.113.9".parse().unwrap()));
        assert!(!throttle.blocked(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(throttle.blocked(mapped));
    }

    #[test]
    fn a_full_document_cache_drops_the_entry_nearest_expiry() {
        let cache = DocumentCache::new(2);
        let client = |id: &str| ClientInfo {
            id: id.into(),
            name: id.into(),
            redirect_uris: vec![],
            auth_method: ClientAuthMethod::None,
            refresh: false,
            document: true,
        };
        assert!(!cache.insert("https://a.example/c", client("a")));
        assert!(!cache.insert("https://b.example/c", client("b")));
        assert!(!cache.insert("https://b.example/c", client("b2")));
        assert!(cache.insert("https://c.example/c", client("c")));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("https://a.example/c").is_none());
        assert_eq!(cache.get("https://b.example/c").unwrap().name, "b2");
        assert!(cache.get("https://c.example/c").is_some());
    }

    #[test]
    fn only_public_addresses_pass_the_document_resolver() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fc00::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public_address(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:4700::1111", "::ffff:1.1.1.1"] {
            assert!(is_public_address(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn signed_tokens_keep_to_their_purpose_issuer_and_audience() {
        let ring = KeyRing::new(vec![vec![7u8; 32]]).unwrap();
        let other = KeyRing::new(vec![vec![8u8; 32]]).unwrap();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!("https://a.example"));
        claims.insert("aud".into(), json!("https://a.example/mcp"));
        claims.insert("exp".into(), json!(now_s() + 60));
        let token = ring.sign(Purpose::Access, claims.clone()).unwrap();
        let ok = ring.verify(
            Purpose::Access,
            &token,
            "https://a.example",
            "https://a.example/mcp",
        );
        assert_eq!(ok.unwrap()["use"], "access");
        for (purpose, iss, aud) in [
            (
                Purpose::Refresh,
                "https://a.example",
                "https://a.example/mcp",
            ),
            (
                Purpose::Access,
                "https://b.example",
                "https://a.example/mcp",
            ),
            (Purpose::Access, "https://a.example", "https://a.example"),
        ] {
            assert!(ring.verify(purpose, &token, iss, aud).is_err());
        }
        let audience = ("https://a.example", "https://a.example/mcp");
        assert!(other
            .verify(Purpose::Access, &token, audience.0, audience.1)
            .is_err());
        claims.insert("exp".into(), json!(now_s() - 1));
        let expired = ring.sign(Purpose::Access, claims).unwrap();
        assert_eq!(
            ring.verify(Purpose::Access, &expired, audience.0, audience.1),
            Err("token expired")
        );
        let none = format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT"}"#),
            token.split('.').nth(1).unwrap()
        );
        assert!(ring
            .verify(Purpose::Access, &none, audience.0, audience.1)
            .is_err());
        // several keys: the first signs, every one verifies
        let rotated = KeyRing::new(vec![vec![9u8; 32], vec![7u8; 32]]).unwrap();
        assert!(rotated
            .verify(Purpose::Access, &token, audience.0, audience.1)
            .is_ok());
    }

    #[test]
    fn key_lines_decode_as_base64_or_hex() {
        assert_eq!(decode_key(&"ab".repeat(32)).unwrap(), vec![0xab; 32]);
        assert_eq!(decode_key(&b64url(&[1u8; 32])).unwrap(), vec![1; 32]);
        assert!(decode_key("not base64 !").is_none());
        assert!(new_signing_key_line().unwrap().len() >= 43);
    }

    #[test]
    fn public_urls_are_origins() {
        assert_eq!(
            parse_public_url("https://analytics.example.org/").unwrap(),
            "https://analytics.example.org"
        );
        assert_eq!(
            parse_public_url("http://127.0.0.1:8892").unwrap(),
            "http://127.0.0.1:8892"
        );
        assert!(parse_public_url("http://analytics.example.org").is_err());
        assert!(parse_public_url("https://analytics.example.org/mcp").is_err());
    }

    #[test]
    fn grantable_scopes() {
        let config = config_with(&[
            ("DATABASE_URL", "postgresql://u:p@127.0.0.1:5432/db"),
            ("MCP_AUTH_TOKENS", "a:b"),
            ("MCP_OAUTH", "token"),
            ("MCP_PUBLIC_URL", "https://a.example"),
        ])
        .unwrap();
        let oauth = OAuth::new(config.oauth.as_ref().unwrap(), &config).unwrap();
        assert_eq!(oauth.grantable_scope(None).as_deref(), Some("mcp"));
        assert_eq!(
            oauth.grantable_scope(Some("openid mcp")).as_deref(),
            Some("mcp")
        );
        assert_eq!(
            oauth.grantable_scope(Some("offline_access mcp")).as_deref(),
            Some("mcp offline_access")
        );
        assert_eq!(oauth.grantable_scope(Some("admin")), None);
        assert!(oauth.resource_acceptable("https://a.example/mcp/"));
        assert!(oauth.resource_acceptable("https://a.example"));
        assert!(!oauth.resource_acceptable("https://a.example/other"));
        assert!(oauth.resource_acceptable("HTTPS://A.Example/mcp"));
        assert!(!oauth.resource_acceptable("https://a.example/MCP"));
        assert!(!oauth.resource_acceptable("https://a.example.evil/mcp"));
        assert_eq!(oauth.database, "db");
    }

    #[test]
    fn databases_parse_from_a_list_and_from_a_file() {
        let none = |_: &str| None;
        let list = parse_database_list(
            "fleet=postgresql://u@h/fleet; finance=host=h dbname=fin user=u",
            &none,
        )
        .unwrap();
        assert_eq!(
            list.iter()
                .map(|d| (d.name.as_str(), d.label.as_str()))
                .collect::<Vec<_>>(),
            [("fleet", "fleet"), ("finance", "finance")]
        );
        let file = "# comment\n[fleet]\nurl = postgresql://u@h/fleet\n\n[fin]\nurl = host=h dbname=fin\nlabel = Finance ledger\nmax_rows = 5\npool_max = 2\nreadable_schemas = a, b\n";
        let parsed = parse_database_file(file, "f", &none).unwrap();
        assert_eq!(parsed[1].label, "Finance ledger");
        assert_eq!((parsed[1].max_rows, parsed[1].pool_max), (Some(5), Some(2)));
        assert_eq!(
            parsed[1].readable_schemas,
            Some(vec!["a".into(), "b".into()])
        );
        for (bad, why) in [
            ("[a]\nurl = x\nsize = 1\n", "unknown key"),
            ("url = postgresql://h/db\n", "before the first [name]"),
            ("[a]\nlabel = x\n", "needs url"),
            ("[a b]\nurl = postgresql://h/db\n", "may only use"),
            ("[a]\nurl = postgresql://h/db\nmax_rows = 0\n", "from 1 to"),
            (
                "[a]\nurl = postgresql://h/db\n[a]\nurl = postgresql://h/db\n",
                "named twice",
            ),
            ("", "names no database"),
        ] {
            let error = parse_database_file(bad, "f", &none).unwrap_err().0;
            assert!(error.contains(why), "{bad:?}: {error}");
        }
    }
}
