//! Real servers the delivery tests talk to: dnsmasq serving MX and address
//! records for test domains, and scriptable receiving SMTP servers
//! (aiosmtpd). Each binds loopback addresses only, on ports picked at run
//! time, and is killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_for;

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
    child: Child,
    pub port: u16,
}

impl Dns {
    /// `records` are dnsmasq options such as `--mx-host=dest.test,mx1.dest.test,10`.
    pub fn start(records: &[String]) -> Dns {
        let port = free_port(&["127.0.0.1"]);
        let mut child = Command::new(dnsmasq())
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
        wait_for("dnsmasq to answer", Duration::from_secs(10), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("dnsmasq exited: {status}");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Dns { child, port }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn dnsmasq() -> &'static str {
    if std::path::Path::new("/usr/sbin/dnsmasq").exists() {
        "/usr/sbin/dnsmasq"
    } else {
        "dnsmasq"
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A receiving SMTP server (see `tests/servers/smtp_sink.py`).
pub struct Sink {
    child: Child,
    pub record: PathBuf,
    _dir: tempfile::TempDir,
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
}

impl Sink {
    pub fn start(listen: &[String], options: SinkOptions<'_>) -> Sink {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = dir.path().join("received.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/servers/smtp_sink.py");
        let mut command = Command::new("python3");
        command.arg(script).arg("--record").arg(&record);
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
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP sink");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("sink output");
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Sink {
            child,
            record,
            _dir: dir,
        }
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
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

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP receiver for alert webhooks (see `tests/servers/webhook.py`).
pub struct WebhookReceiver {
    child: Child,
    pub url: String,
    record: PathBuf,
    _dir: tempfile::TempDir,
}

impl WebhookReceiver {
    /// `fail_first`: answer 503 to that many requests first.
    pub fn start(secret: &str, fail_first: u32) -> WebhookReceiver {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = dir.path().join("requests.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/servers/webhook.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--secret", secret, "--fail-first", &fail_first.to_string()])
            .arg("--record")
            .arg(&record)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the webhook receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("receiver output");
        let port = line.trim().strip_prefix("ready ").expect("ready line").to_string();
        WebhookReceiver {
            child,
            url: format!("http://127.0.0.1:{port}/alerts"),
            record,
            _dir: dir,
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
