//! Test harness: starts the real `ferry` binary in a temporary directory on
//! free ports (it binds port 0 and logs what it bound), with a test CA and
//! certificate; runs real SMTP clients against it; polls with deadlines.
//!
//! Layout:
//! - [`Ferry`]: one relay process, its directory, its ports, its log.
//! - [`pki`]: a test certificate authority and a server certificate.
//! - [`client`]: a raw SMTP client (plaintext or TLS) for byte-exact dialogues.
//! - [`servers`]: dnsmasq for MX records, receiving SMTP servers.
//! - [`wait_for`]: polling with a deadline instead of sleeping.

pub mod client;
pub mod ldap;
pub mod pki;
pub mod servers;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Polls `check` until it returns Some or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_for`] for a check that has to await (a store call, say).
pub async fn wait_until<T, F>(what: &str, timeout: Duration, mut check: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `ferry` binary built by `cargo build` (or `FERRY_BIN`).
pub fn binary() -> PathBuf {
    if let Ok(bin) = std::env::var("FERRY_BIN") {
        return bin.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug/ferry");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin ferry` first (make test does)",
        bin.display()
    );
    bin
}

/// The demo tenant and application every relay is prepared with.
pub const TENANT: &str = "acme";
pub const DOMAIN: &str = "acme.test";
pub const USER: &str = "billing";
pub const SENDER: &str = "billing@acme.test";

/// One relay process and everything it owns.
pub struct Ferry {
    pub dir: tempfile::TempDir,
    pub pki: pki::TestPki,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    pub smtp: Option<SocketAddr>,
    pub submission: Option<SocketAddr>,
    pub submissions: Option<SocketAddr>,
    /// `listen.direct_submission`, when set.
    pub direct_submission: Option<SocketAddr>,
    /// `listen.inbound`, when set.
    pub inbound: Option<SocketAddr>,
    /// The admin HTTP endpoint, when `admin.listen` is set.
    pub admin: Option<SocketAddr>,
    /// The demo application's password.
    pub password: String,
    /// Settings beyond the defaults, passed as `FERRY__SECTION__KEY` variables.
    settings: Vec<(String, String)>,
}

impl Ferry {
    /// A prepared (not yet started) relay with the demo tenant and an app
    /// allowed from loopback. `settings` are (`section.key`, value) pairs,
    /// given to every `ferry` command through the environment.
    pub fn prepare(settings: &[(&str, &str)]) -> Ferry {
        let mut ferry = Ferry::node(settings);
        ferry.cli_ok(&["tenant", "add", TENANT, "--domain", DOMAIN]);
        ferry.password = ferry.add_app(USER, &["--from", SENDER, "--allow", "127.0.0.0/8"]);
        ferry
    }

    /// A relay with its own directory, certificate and settings but no
    /// onboarding: another node of a cluster whose store already has them.
    pub fn node(settings: &[(&str, &str)]) -> Ferry {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = pki::TestPki::create(dir.path());
        let mut ferry = Ferry {
            dir,
            pki,
            child: None,
            log: Arc::default(),
            smtp: None,
            submission: None,
            submissions: None,
            direct_submission: None,
            inbound: None,
            admin: None,
            password: String::new(),
            settings: Vec::new(),
        };
        ferry.set(settings);
        ferry.write_config();
        ferry
    }

    /// Adds settings (for the next launch and CLI calls).
    pub fn set(&mut self, settings: &[(&str, &str)]) {
        self.settings.extend(settings.iter().map(|(k, v)| {
            (
                format!("FERRY__{}", k.replace('.', "__").to_ascii_uppercase()),
                v.to_string(),
            )
        }));
    }

    /// Sets environment variables as they are named (not settings), for
    /// the next launch and CLI calls.
    pub fn set_env(&mut self, vars: &[(&str, &str)]) {
        self.settings
            .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    }

    /// Prepared and started.
    pub fn start(settings: &[(&str, &str)]) -> Ferry {
        let mut ferry = Ferry::prepare(settings);
        ferry.launch();
        ferry
    }

    /// The test configuration. Greeted at once: the pause before the
    /// greeting is for strangers, tested on its own (`tests/hostile.rs`).
    fn write_config(&self) {
        let dir = self.dir.path();
        let config = format!(
            "[server]\nhostname = \"relay.test\"\ndata_dir = \"{data}\"\n\
             [listen]\nsmtp = \"127.0.0.1:0\"\nsubmission = \"127.0.0.1:0\"\nsubmissions = \"127.0.0.1:0\"\n\
             [tls]\ncertificate = \"{cert}\"\nkey = \"{key}\"\n\
             [smtp]\ngreeting_pause_ms = 0\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\n",
            data = dir.join("data").display(),
            cert = self.pki.cert.display(),
            key = self.pki.key.display(),
        );
        std::fs::write(self.config_path(), config).expect("write config");
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("ferry.toml")
    }

    pub fn capture_dir(&self) -> PathBuf {
        self.dir.path().join("data/capture")
    }

    /// Runs `ferry --config … ARGS` to completion (while the relay runs on the
    /// embedded store, the command goes through its admin API).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run ferry")
    }

    fn command(&self) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("--config")
            .arg(self.config_path())
            .envs(self.settings.iter().map(|(k, v)| (k, v)));
        command
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "ferry {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Adds an application and returns its password.
    pub fn add_app(&self, username: &str, args: &[&str]) -> String {
        self.add_app_in(TENANT, username, args)
    }

    /// Adds an application to `tenant` and returns its password.
    pub fn add_app_in(&self, tenant: &str, username: &str, args: &[&str]) -> String {
        let mut all = vec!["app", "add", username, "--tenant", tenant];
        all.extend_from_slice(args);
        self.cli_line(&all, "password: ")
    }

    /// Makes an API token (`ferry token add ARGS`) and returns it.
    pub fn add_token(&self, args: &[&str]) -> String {
        let mut all = vec!["token", "add"];
        all.extend_from_slice(args);
        self.cli_line(&all, "token: ")
    }

    /// Runs a CLI command that must succeed and returns what follows
    /// `prefix` on its output's line that starts with it.
    fn cli_line(&self, args: &[&str], prefix: &str) -> String {
        let out = self.cli_ok(args);
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {out}"))
            .to_string()
    }

    /// Starts `ferry serve` and waits until all three listeners are bound.
    pub fn launch(&mut self) {
        self.launch_as("all");
    }

    /// Starts `ferry serve --role ROLE` and waits until it is ready.
    pub fn launch_as(&mut self, role: &str) {
        let mut child = self
            .command()
            .args(["serve", "--role", role])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferry");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        self.log = log;
        self.child = Some(child);
        let events = wait_for("ferry to be ready", Duration::from_secs(30), || {
            self.assert_running();
            let events = self.log_events();
            events.iter().any(|e| e["message"] == "ferry ready").then_some(events)
        });
        let addresses = events.iter().filter(|e| e["message"] == "listening").filter_map(|e| {
            Some((
                e["listener"].as_str()?.to_string(),
                e["address"].as_str()?.parse::<SocketAddr>().ok()?,
            ))
        });
        for (kind, addr) in addresses {
            match kind.as_str() {
                "smtp" => self.smtp = Some(addr),
                "submission" => self.submission = Some(addr),
                "admin" => self.admin = Some(addr),
                "direct_submission" => self.direct_submission = Some(addr),
                "inbound" => self.inbound = Some(addr),
                _ => self.submissions = Some(addr),
            }
        }
    }

    fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("ferry exited with {status}; log:\n{}", self.log_text());
        }
    }

    /// Every JSON log line so far.
    pub fn log_events(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Waits for a log event with this message whose fields contain `needle`.
    pub fn wait_for_log(&self, message: &str, needle: &str) -> serde_json::Value {
        wait_for(
            &format!("log {message:?} with {needle:?}"),
            Duration::from_secs(10),
            || {
                self.log_events()
                    .into_iter()
                    .find(|e| e["message"] == message && e.to_string().contains(needle))
            },
        )
    }

    /// The relay's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no drain, no cleanup.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, without waiting: the relay starts to drain.
    pub fn terminate(&self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    /// The running relay's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the relay's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.stop_within(Duration::from_secs(30))
    }

    /// SIGTERM, then waits for the process to exit, failing past `timeout`.
    pub fn stop_within(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        wait_for("ferry to exit", timeout, || child.try_wait().ok().flatten())
    }

    /// Captured messages: (queue id, .eml bytes).
    pub fn captured(&self) -> Vec<(String, Vec<u8>)> {
        let Ok(entries) = std::fs::read_dir(self.capture_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Vec<u8>)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.strip_suffix(".eml")?.to_string();
                (!id.starts_with('.')).then(|| Some((id, std::fs::read(e.path()).ok()?)))?
            })
            .collect();
        out.sort();
        out
    }

    /// Waits until at least `n` messages are captured.
    pub fn wait_captured(&self, n: usize) -> Vec<(String, Vec<u8>)> {
        self.wait_captured_within(n, Duration::from_secs(20))
    }

    /// Waits up to `timeout` until at least `n` messages are captured.
    pub fn wait_captured_within(&self, n: usize, timeout: Duration) -> Vec<(String, Vec<u8>)> {
        wait_for(&format!("{n} captured messages"), timeout, || {
            let c = self.captured();
            (c.len() >= n).then_some(c)
        })
    }

    /// GET `path` on the admin endpoint with curl: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let admin = self.admin.expect("admin.listen set");
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", &format!("http://{admin}{path}")])
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }

    /// An admin API call with curl: (status, JSON body or Null, content type).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, serde_json::Value, String) {
        let admin = self.admin.expect("admin.listen set");
        let mut command = Command::new("curl");
        command.args(["-s", "-X", method, "-w", "\n%{http_code}\n%{content_type}"]);
        if let Some(token) = token {
            command.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        if let Some(body) = body {
            command.args(["-H", "Content-Type: application/json", "--data-binary", body]);
        }
        let out = command.arg(format!("http://{admin}{path}")).output().expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut parts = text.rsplitn(3, '\n');
        let content_type = parts.next().unwrap_or("").to_string();
        let status = parts.next().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let body = serde_json::from_str(parts.next().unwrap_or("")).unwrap_or(serde_json::Value::Null);
        (status, body, content_type)
    }

    /// A metric's value on the admin endpoint: one series
    /// (`name{label="v"}`), or the sum of all of a name's series.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.admin_get("/metrics");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(key, _)| *key == series || key.split('{').next() == Some(series))
            .filter_map(|(_, value)| value.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Splits a captured message into the headers Ferry added and the rest,
/// which must be byte-identical to what the client sent.
pub fn strip_added_headers(captured: &[u8]) -> &[u8] {
    let mut pos = 0;
    loop {
        let rest = &captured[pos..];
        let line_end = rest.windows(2).position(|w| w == b"\r\n").map_or(rest.len(), |p| p + 2);
        let line = &rest[..line_end];
        let added = line.starts_with(b"Received: ")
            || line.starts_with(b"Message-ID: <") && pos > 0
            || line.starts_with(b"Date: ") && pos > 0;
        let continuation = pos > 0 && (line.starts_with(b"\t") || line.starts_with(b" "));
        if !(added || continuation) || line_end == 0 {
            return rest;
        }
        pos += line_end;
    }
}
