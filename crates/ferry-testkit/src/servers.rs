//! Real servers the delivery tests talk to: dnsmasq serving MX and address
//! records for test domains, and scriptable receiving SMTP servers
//! (aiosmtpd). Each binds loopback addresses only, on ports picked at run
//! time, and is killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_for;

/// A child process that is killed (and reaped) when dropped.
pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on every one of `ips` right now.
pub fn free_port(ips: &[&str]) -> u16 {
    wait_for("a port free on all addresses", Duration::from_secs(10), || {
        let first = std::net::TcpListener::bind((ips[0], 0)).ok()?;
        let port = first.local_addr().ok()?.port();
        let others: Option<Vec<_>> = ips[1..]
            .iter()
            .map(|ip| std::net::TcpListener::bind((*ip, port)).ok())
            .collect();
        let udp = std::net::UdpSocket::bind((ips[0], port)).ok();
        (others.is_some() && udp.is_some()).then_some(port)
    })
}

/// dnsmasq, authoritative for `.test`, with the records given as its options.
pub struct Dns {
    _child: Process,
    pub port: u16,
}

impl Dns {
    /// `records` are dnsmasq options such as `--mx-host=dest.test,mx1.dest.test,10`.
    pub fn start(records: &[String]) -> Dns {
        let port = free_port(&["127.0.0.1"]);
        let child = Command::new(sbin("dnsmasq"))
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--conf-file=/dev/null",
            ])
            .args([
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--pid-file=",
                "--local=/test/",
                "--log-facility=-",
            ])
            .arg(format!("--port={port}"))
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq (apt-get install dnsmasq-base)");
        let mut child = Process(child);
        wait_for("dnsmasq to answer", Duration::from_secs(10), || {
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("dnsmasq exited: {status}");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Dns { _child: child, port }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A JSON-lines file a test server appends to, in a directory of its own.
pub struct Record {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Record {
    fn new(name: &str) -> Record {
        let dir = tempfile::tempdir().expect("tempdir");
        Record {
            path: dir.path().join(name),
            _dir: dir,
        }
    }

    /// Every line so far, parsed.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Starts `tests/servers/SCRIPT ARGS --record FILE` with `python`, and
/// waits for its `ready PORT` line.
fn recording_server(mut python: Command, script: &str, args: &[&str], record: &Record) -> (Process, u16) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/servers")
        .join(script);
    let child = python
        .arg(path)
        .args(args)
        .arg("--record")
        .arg(&record.path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {script}: {e}"));
    let mut child = Process(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{script} output: {e}"));
    let port = line
        .trim()
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{script} did not start: {line:?}"));
    (child, port)
}

/// A receiving SMTP server (see `tests/servers/smtp_sink.py`).
pub struct Sink {
    _child: Process,
    pub record: Record,
}

/// How a sink behaves.
#[derive(Default)]
pub struct SinkOptions<'a> {
    /// `(certificate, key)` PEM files: offer STARTTLS.
    pub tls: Option<(&'a std::path::Path, &'a std::path::Path)>,
    /// `rcpt=CODE TEXT[:times]`: answer RCPT for that recipient so (that many times).
    pub replies: Vec<String>,
    /// Recipients whose DATA reply is held back for a long time.
    pub slow: Vec<String>,
    /// How long that is (default 30 s).
    pub slow_seconds: Option<f64>,
    /// Offer neither 8BITMIME nor SMTPUTF8.
    pub seven_bit: bool,
}

impl Sink {
    pub fn start(listen: &[String], options: SinkOptions<'_>) -> Sink {
        let record = Record::new("received.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/servers/smtp_sink.py");
        let mut command = Command::new("python3");
        command.arg(script).arg("--record").arg(&record.path);
        for l in listen {
            command.arg("--listen").arg(l);
        }
        if let Some((cert, key)) = options.tls {
            command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        for r in &options.replies {
            command.arg("--reply").arg(r);
        }
        for s in &options.slow {
            command.arg("--slow").arg(s);
        }
        if let Some(seconds) = options.slow_seconds {
            command.arg("--slow-seconds").arg(seconds.to_string());
        }
        if options.seven_bit {
            command.arg("--seven-bit");
        }
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP sink");
        let mut child = Process(child);
        let stdout = child.0.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("sink output");
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Sink { _child: child, record }
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        self.record.lines()
    }

    /// Messages received for `rcpt`.
    pub fn received_for(&self, rcpt: &str) -> Vec<serde_json::Value> {
        self.received()
            .into_iter()
            .filter(|m| m["rcpts"].as_array().is_some_and(|r| r.iter().any(|x| x == rcpt)))
            .collect()
    }

    pub fn wait_for_rcpt(&self, rcpt: &str, n: usize) -> Vec<serde_json::Value> {
        wait_for(&format!("{n} message(s) for {rcpt}"), Duration::from_secs(30), || {
            let got = self.received_for(rcpt);
            (got.len() >= n).then_some(got)
        })
    }
}

/// An HTTP receiver for alert webhooks (see `tests/servers/webhook.py`).
pub struct WebhookReceiver {
    _child: Process,
    pub url: String,
    record: Record,
}

impl WebhookReceiver {
    /// `fail_first`: answer 503 to that many requests first.
    pub fn start(secret: &str, fail_first: u32) -> WebhookReceiver {
        let record = Record::new("requests.jsonl");
        let args = ["--secret", secret, "--fail-first", &fail_first.to_string()];
        let (child, port) = recording_server(Command::new("python3"), "webhook.py", &args, &record);
        WebhookReceiver {
            _child: child,
            url: format!("http://127.0.0.1:{port}/alerts"),
            record,
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.record.lines()
    }
}

/// An OTLP/HTTP trace receiver (see `tests/servers/otlp_receiver.py`),
/// decoding with the collector's own protobuf definitions.
pub struct OtlpReceiver {
    _child: Process,
    /// The base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
    pub endpoint: String,
    record: Record,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        let record = Record::new("spans.jsonl");
        let python = Command::new(tool("peers/bin/python", "FERRY_PEERS_PYTHON"));
        let (child, port) = recording_server(python, "otlp_receiver.py", &[], &record);
        OtlpReceiver {
            _child: child,
            endpoint: format!("http://127.0.0.1:{port}"),
            record,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<serde_json::Value> {
        self.record.lines()
    }
}

/// A real clamd on a free loopback port, with a test signature database
/// (EICAR) written by the harness: no download.
pub struct Clamd {
    _child: Process,
    pub address: String,
    _dir: tempfile::TempDir,
}

/// The EICAR anti-virus test string.
pub const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

impl Clamd {
    pub fn start() -> Clamd {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).expect("db dir");
        let hex: String = EICAR.bytes().map(|b| format!("{b:02x}")).collect();
        std::fs::write(db.join("test.ndb"), format!("Eicar-Test-Signature:0:*:{hex}\n")).expect("signature");
        let port = free_port(&["127.0.0.1"]);
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nTCPSocket {port}\nTCPAddr 127.0.0.1\nDatabaseDirectory {}\nLogFile {}\nUser root\n",
                db.display(),
                dir.path().join("clamd.log").display()
            ),
        )
        .expect("clamd.conf");
        let child = Command::new(sbin("clamd"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clamd (apt-get install clamav-daemon)");
        let mut child = Process(child);
        ping_until_ready(
            &mut child.0,
            "clamd",
            port,
            b"zPING\0",
            b"PONG",
            Duration::from_secs(60),
        );
        Clamd {
            _child: child,
            address: format!("127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

pub(crate) fn sbin(name: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin"] {
        let path = format!("{dir}/{name}");
        if std::path::Path::new(&path).exists() {
            return path;
        }
    }
    name.to_string()
}

/// A real rspamd normal worker on a free loopback port. Its DNS points at
/// a dead loopback port and fuzzy checks are off, so nothing leaves the machine.
pub struct Rspamd {
    child: Process,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Rspamd {
    pub fn start() -> Rspamd {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port(&["127.0.0.1"]);
        std::fs::create_dir_all(dir.path().join("local.d")).expect("local.d");
        std::fs::write(dir.path().join("local.d/fuzzy_check.conf"), "enabled = false;\n").expect("fuzzy");
        let conf = dir.path().join("rspamd.conf");
        std::fs::write(
            &conf,
            format!(
                ".include \"$CONFDIR/common.conf\"\n\
                 options {{\n pidfile = \"$RUNDIR/rspamd.pid\";\n .include \"$CONFDIR/options.inc\"\n\
                 dns {{ nameserver = [\"127.0.0.1:9\"]; timeout = 0.2s; retransmits = 0; }}\n}}\n\
                 logging {{ type = \"console\"; level = \"error\"; }}\n\
                 worker \"normal\" {{\n bind_socket = \"127.0.0.1:{port}\";\n .include \"$CONFDIR/worker-normal.inc\"\n}}\n"
            ),
        )
        .expect("rspamd.conf");
        let d = dir.path().display().to_string();
        use std::os::unix::process::CommandExt;
        let child = Command::new("rspamd")
            // Its own process group, so the workers it forks go with it.
            .process_group(0)
            .args(["-f", "-i", "-u", "root", "-g", "root", "-c"])
            .arg(&conf)
            .args([
                "--var=CONFDIR=/etc/rspamd",
                &format!("--var=LOCAL_CONFDIR={d}"),
                &format!("--var=RUNDIR={d}"),
            ])
            .args([format!("--var=DBDIR={d}"), format!("--var=LOGDIR={d}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rspamd (apt-get install rspamd)");
        let mut child = Process(child);
        wait_for("rspamd to listen", Duration::from_secs(90), || {
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("rspamd exited: {status}");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Rspamd {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.0.wait();
    }
}

/// HAProxy in TCP mode: one frontend per entry, each on a free loopback
/// port, spreading connections round-robin over its backends and sending
/// each a PROXY protocol header (`send-proxy-v2` or `send-proxy`).
pub struct Haproxy {
    _child: Process,
    /// The frontends' ports, in the order given.
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    pub fn start(frontends: &[Vec<std::net::SocketAddr>], send_proxy: &str) -> Haproxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = frontends.iter().map(|_| free_port(&["127.0.0.1"])).collect();
        let mut config = String::from(
            "global\n  maxconn 256\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n",
        );
        for (i, (backends, port)) in frontends.iter().zip(&ports).enumerate() {
            config.push_str(&format!(
                "frontend f{i}\n  bind 127.0.0.1:{port}\n  default_backend b{i}\nbackend b{i}\n  balance roundrobin\n"
            ));
            for (n, backend) in backends.iter().enumerate() {
                config.push_str(&format!("  server n{n} {backend} {send_proxy}\n"));
            }
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let child = Command::new(sbin("haproxy"))
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start haproxy (apt-get install haproxy)");
        let mut child = Process(child);
        for port in &ports {
            wait_for("haproxy to listen", Duration::from_secs(10), || {
                if let Ok(Some(status)) = child.0.try_wait() {
                    panic!("haproxy exited: {status}");
                }
                std::net::TcpStream::connect(("127.0.0.1", *port)).ok()
            });
        }
        Haproxy {
            _child: child,
            ports,
            _dir: dir,
        }
    }

    /// The `i`th frontend's address.
    pub fn frontend(&self, i: usize) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.ports[i]).into()
    }
}

/// A real redis-server on a free loopback port, persisting to its own
/// directory with `appendfsync always` (every write synced before it is
/// answered), as Ferry's documentation asks of production.
pub struct Redis {
    child: Option<Process>,
    pub port: u16,
    dir: tempfile::TempDir,
    options: RedisOptions,
}

/// How a test's redis-server differs from the plain one.
#[derive(Default, Clone)]
pub struct RedisOptions {
    /// The primary's port, for a replica.
    pub replica_of: Option<u16>,
    /// `requirepass` (and `masterauth`, for a replica of such a primary).
    pub password: Option<String>,
    /// `(certificate, key, CA)` PEM files: TLS only, on the one port.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Another server binary speaking the same protocol ([`valkey_server`]).
    pub server: Option<PathBuf>,
    /// An ACL user `(name, password)` with every right, and the default
    /// user turned off: only that user may connect.
    pub acl_user: Option<(String, String)>,
}

/// A tool `scripts/install-test-deps.sh` installs under its tools
/// directory (`$FERRY_TOOLS_DIR`, by default `~/.cache/ferry-tools`), or
/// the path in `$override_var` when that is set.
pub fn tool(relative: &str, override_var: &str) -> PathBuf {
    if let Ok(path) = std::env::var(override_var) {
        return path.into();
    }
    let tools = std::env::var("FERRY_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ferry-tools"));
    let path = tools.join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        path.display()
    );
    path
}

/// Valkey's server (WAITAOF needs it).
pub fn valkey_server() -> PathBuf {
    tool("bin/valkey-server", "FERRY_VALKEY_SERVER")
}

impl Redis {
    pub fn start() -> Redis {
        Redis::with(RedisOptions::default())
    }

    /// A replica of `primary`, started and answering (it may still be
    /// catching up: the primary's `WAIT` is what tells).
    pub fn replica_of(primary: &Redis) -> Redis {
        Redis::with(RedisOptions {
            replica_of: Some(primary.port),
            ..primary.options.clone()
        })
    }

    pub fn with(options: RedisOptions) -> Redis {
        let mut redis = Redis {
            child: None,
            port: free_port(&["127.0.0.1"]),
            dir: tempfile::tempdir().expect("tempdir"),
            options,
        };
        redis.launch();
        redis
    }

    /// `redis://127.0.0.1:PORT/` (`rediss://` with TLS, with the password).
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() { "rediss" } else { "redis" };
        let auth = match (&self.options.acl_user, &self.options.password) {
            (Some((user, password)), _) => format!("{user}:{password}@"),
            (None, Some(password)) => format!(":{password}@"),
            (None, None) => String::new(),
        };
        format!("{scheme}://{auth}127.0.0.1:{}/", self.port)
    }

    fn launch(&mut self) {
        let port = self.port.to_string();
        let server = self.options.server.clone().unwrap_or_else(|| "redis-server".into());
        let mut command = Command::new(server);
        command
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""]);
        if let Some((cert, key, ca)) = &self.options.tls {
            command.args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "optional"]);
            command.arg("--tls-cert-file").arg(cert).arg("--tls-key-file").arg(key);
            command
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-replication", "yes"]);
        } else {
            command.args(["--port", &port]);
        }
        if let Some(password) = &self.options.password {
            command.args(["--requirepass", password, "--masterauth", password]);
        }
        if let Some(primary) = self.options.replica_of {
            command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        if let Some((user, password)) = &self.options.acl_user {
            command.args(["--user", user, "on", &format!(">{password}"), "~*", "&*", "+@all"]);
            command.args(["--user", "default", "off"]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        let mut child = Process(child);
        // Without TLS a PING answers (+PONG, or -NOAUTH: it listens either way).
        let authenticated = self.options.password.is_some() || self.options.acl_user.is_some();
        let pong: &[u8] = if authenticated { b"-NOAUTH" } else { b"+PONG" };
        if self.options.tls.is_some() {
            wait_for("redis-server (TLS) to listen", Duration::from_secs(30), || {
                if let Ok(Some(status)) = child.0.try_wait() {
                    panic!("redis-server exited: {status}");
                }
                std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()
            });
        } else {
            ping_until_ready(
                &mut child.0,
                "redis-server",
                self.port,
                b"PING\r\n",
                pong,
                Duration::from_secs(30),
            );
        }
        self.child = Some(child);
    }

    /// Waits until `n` replicas are connected and past their first sync,
    /// so that `WAIT` can count them.
    pub fn wait_for_replicas(&self, n: usize) {
        wait_for(&format!("{n} replicas in sync"), Duration::from_secs(30), || {
            let out = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "INFO", "replication"])
                .output()
                .ok()?;
            let info = String::from_utf8_lossy(&out.stdout);
            let online = info
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count();
            (online >= n).then_some(())
        });
    }

    /// SIGKILL: the server is gone until [`Redis::restart_after_kill`].
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// SIGKILL (if it still runs) and start again on the same port and
    /// files: what was acknowledged must still be there.
    pub fn restart_after_kill(&mut self) {
        self.child = None;
        self.launch();
    }
}

/// Three redis-server processes in Sentinel mode watching `primary` as
/// `ferry`, with a quorum of two and a one-second down-after, so a killed
/// primary is replaced within seconds.
pub struct Sentinels {
    _children: Vec<Process>,
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Sentinels {
    pub fn watch(primary: &Redis) -> Sentinels {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut children = Vec::new();
        let mut ports = Vec::new();
        for i in 0..3 {
            let port = free_port(&["127.0.0.1"]);
            let config = dir.path().join(format!("sentinel{i}.conf"));
            let mut text = format!(
                "bind 127.0.0.1\nport {port}\ndir {dir}\n\
                 sentinel monitor ferry 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds ferry 1000\n\
                 sentinel failover-timeout ferry 5000\n\
                 sentinel parallel-syncs ferry 1\n",
                dir = dir.path().display(),
                primary = primary.port,
            );
            if let Some(password) = &primary.options.password {
                text.push_str(&format!("sentinel auth-pass ferry {password}\n"));
            }
            std::fs::write(&config, text).expect("write sentinel.conf");
            let child = Command::new("redis-server")
                .arg(&config)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server --sentinel");
            let mut child = Process(child);
            ping_until_ready(
                &mut child.0,
                "redis sentinel",
                port,
                b"PING\r\n",
                b"+PONG",
                Duration::from_secs(30),
            );
            children.push(child);
            ports.push(port);
        }
        Sentinels {
            _children: children,
            ports,
            _dir: dir,
        }
    }

    /// `store.redis.sentinels`: `127.0.0.1:P1,127.0.0.1:P2,…`.
    pub fn addresses(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Waits until the server `child` answers `ping` on a loopback `port` with
/// something starting with `pong`; panics if it exits first.
fn ping_until_ready(child: &mut Child, name: &str, port: u16, ping: &[u8], pong: &[u8], timeout: Duration) {
    use std::io::{Read, Write};
    wait_for(&format!("{name} to answer"), timeout, || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited: {status}");
        }
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(ping).ok()?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).ok()?;
        buf[..n].starts_with(pong).then_some(())
    });
}
