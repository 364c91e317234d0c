//! The container image, without a registry or a container engine: the
//! root filesystem the Dockerfile's runtime stage describes
//! (`gcr.io/distroless/cc-debian12:nonroot` plus the binary) is built from
//! Debian's packages by `scripts/build-rootfs.sh`, and the binary is run
//! from it as the image would run it: chrooted into the folder, as user
//! 65532 with no capabilities and no new privileges, the root file system
//! read-only and only the data volume and `/tmp` writable, no shell, its
//! configuration at `FERRY_CONFIG=/etc/ferry/ferry.toml`.
//!
//! On the default rendering of the chart (the ConfigMap in `k8s/`, which
//! tests/chart.rs keeps equal to `helm template`): `ferry check-config`
//! passes; `ferry serve --role all` on an embedded store answers `/readyz`
//! on its admin listener; a tenant onboarded with the image's CLI submits
//! a message that leaves the chrooted relay for a receiving SMTP server
//! found by MX, over STARTTLS verified against a CA file inside the image.
//!
//! The test builds the folder from the workspace's debug binary (what
//! `make test` builds); `make image-rootfs` builds it from the release
//! binary, as the Dockerfile does. It needs root (chroot, mount
//! namespaces), `apt-get update` done once (the .debs are cached under
//! `$FERRY_TOOLS_DIR/rootfs-debs` after that), util-linux's `unshare` and
//! `setpriv`, dnsmasq and python3 with aiosmtpd (as tests/delivery.rs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_testkit::client::Smtp;
use ferry_testkit::pki::TestPki;
use ferry_testkit::servers::{Dns, Sink, SinkOptions, free_port};
use ferry_testkit::{DOMAIN, SENDER, TENANT, USER, binary, wait_for};

/// The image's user (distroless' `nonroot`, the Dockerfile's `USER`).
const NONROOT: u32 = 65532;
/// Where the chart mounts the configuration, and the image's `FERRY_CONFIG`.
const CONFIG: &str = "/etc/ferry/ferry.toml";
/// The rendered configuration's `server.data_dir`: the pod's data volume.
const DATA_DIR: &str = "/var/lib/ferry";

/// Mounts what a container runtime gives a pod of this image (private to
/// the new mount namespace, gone with the process), then becomes the
/// image's user inside the folder and runs its entrypoint. `exec` all the
/// way: the process the test holds is the relay itself.
const RUNTIME: &str = r#"set -eu
root=$1 data=$2
shift 2
# readOnlyRootFilesystem: true
mount --bind "$root" "$root"
mount -o remount,bind,ro,nosuid,nodev "$root"
# the emptyDir volumes: data_dir and /tmp
mount --bind "$data" "$root/var/lib/ferry"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$root/tmp"
# what every runtime mounts: /proc, a /dev with the usual nodes
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o nosuid,noexec,mode=755 tmpfs "$root/dev"
for node in null zero full random urandom tty; do
    : > "$root/dev/$node"
    mount --bind "/dev/$node" "$root/dev/$node"
done
mount -o remount,ro,nosuid,noexec "$root/dev"
# USER 65532:65532, allowPrivilegeEscalation: false, capabilities drop ALL
# (a uid other than 0 has none left after the switch)
exec setpriv --no-new-privs chroot --userspec=65532:65532 "$root" /usr/local/bin/ferry "$@"
"#;

/// The environment the image's configuration sets (distroless' PATH and
/// SSL_CERT_FILE, the Dockerfile's FERRY_CONFIG, HOME from /etc/passwd).
const IMAGE_ENV: [(&str, &str); 4] = [
    ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    ("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
    ("FERRY_CONFIG", CONFIG),
    ("HOME", "/home/nonroot"),
];

/// The ferry.toml of the chart's default rendering: the ConfigMap in k8s/ferry.yaml.
fn default_rendering() -> String {
    let manifests = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/ferry.yaml"))
        .expect("read k8s/ferry.yaml");
    let mut lines = manifests.lines().skip_while(|l| l.trim_end() != "  ferry.toml: |");
    assert!(
        lines.next().is_some(),
        "no ferry.toml in the ConfigMap of k8s/ferry.yaml"
    );
    let config: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(""))
        .collect();
    let config = config.join("\n").trim_end().to_string() + "\n";
    assert!(
        config.contains("data_dir = \"/var/lib/ferry\""),
        "the rendering keeps its data on the volume mounted at {DATA_DIR}:\n{config}"
    );
    config
}

/// The folder of the image, built by the script, and what the test (as
/// the container runtime and the chart would) puts into it.
struct Image {
    dir: tempfile::TempDir,
    pki: TestPki,
}

impl Image {
    fn build() -> Image {
        assert!(is_root(), "tests/image.rs chroots and mounts: run it as root");
        let dir = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/build-rootfs.sh"))
            .arg(binary())
            .arg(dir.path().join("rootfs"))
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/build-rootfs.sh");
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "scripts/build-rootfs.sh failed:\n{log}");
        eprintln!("{}built in {:.1?}", log, started.elapsed());
        let pki = TestPki::create(dir.path());
        let image = Image { dir, pki };
        let root = image.root();

        // What distroless' nonroot image holds.
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("/etc/passwd");
        assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
        let group = std::fs::read_to_string(root.join("etc/group")).expect("/etc/group");
        assert!(group.contains("nonroot:x:65532:"), "{group}");
        let bundle = std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt")).expect("CA bundle");
        assert!(
            bundle.matches("-----BEGIN CERTIFICATE-----").count() > 100,
            "a CA bundle"
        );
        for path in [
            "usr/share/zoneinfo/UTC",
            "etc/services",
            "etc/os-release",
            "home/nonroot",
            "tmp",
        ] {
            assert!(root.join(path).exists(), "/{path} is in the image");
        }
        for shell in ["bin/sh", "bin/bash", "usr/bin/apt-get"] {
            assert!(!root.join(shell).exists(), "no /{shell} in a distroless image");
        }

        // The chart's config map and TLS secret (read-only in the pod as
        // here), and the mount point of the data volume, which a runtime
        // makes before it starts the container.
        std::fs::create_dir_all(root.join("etc/ferry/tls")).expect("mkdir /etc/ferry/tls");
        std::fs::write(root.join(&CONFIG[1..]), default_rendering()).expect("write ferry.toml");
        for (from, to) in [
            (&image.pki.cert, "tls.crt"),
            (&image.pki.key, "tls.key"),
            (&image.pki.ca, "ca.crt"),
        ] {
            let to = root.join("etc/ferry/tls").join(to);
            std::fs::copy(from, &to).expect("copy the TLS files");
            // A Secret's files are readable by the pod's fsGroup.
            std::os::unix::fs::chown(&to, None, Some(NONROOT)).expect("chown");
        }
        std::fs::create_dir_all(root.join(&DATA_DIR[1..])).expect("mkdir the data volume's mount point");
        image
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// A fresh emptyDir for the data volume, writable by the pod's fsGroup.
    fn data_volume(&self, name: &str) -> PathBuf {
        let data = self.dir.path().join(name);
        std::fs::create_dir(&data).expect("mkdir data");
        std::os::unix::fs::chown(&data, Some(NONROOT), Some(NONROOT)).expect("chown data");
        data
    }

    /// `ferry ARGS` as the image runs it, with the image's environment and
    /// `env` on top (what the chart's Secrets and this laptop add).
    fn ferry(&self, data: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--", "sh", "-c", RUNTIME, "sh"])
            .arg(self.root())
            .arg(data)
            .args(args)
            .env_clear()
            .envs(IMAGE_ENV)
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        command
    }

    fn ferry_ok(&self, data: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
        let out = self.ferry(data, env, args).output().expect("run ferry in the image");
        assert!(
            out.status.success(),
            "ferry {args:?} in the image failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// The effective uid is 0 (read from /proc: the package has no libc dependency).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}

/// `ferry serve` running in the image; killed when dropped.
struct Running {
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(mut command: Command) -> Running {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ferry in the image");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log").push(line);
            }
        });
        Running {
            child: Some(child),
            log,
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    fn events(&self) -> Vec<serde_json::Value> {
        let log = self.log.lock().expect("log");
        log.iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn assert_running(&mut self) {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            panic!("ferry in the image exited with {status}; log:\n{}", self.log_text());
        }
    }

    /// Waits for "ferry ready", then returns the bound listeners by kind.
    fn wait_ready(&mut self) -> Vec<(String, SocketAddr)> {
        let events = wait_for("ferry in the image to be ready", Duration::from_secs(30), || {
            self.assert_running();
            let events = self.events();
            events.iter().any(|e| e["message"] == "ferry ready").then_some(events)
        });
        events
            .iter()
            .filter(|e| e["message"] == "listening")
            .filter_map(|e| {
                Some((
                    e["listener"].as_str()?.to_string(),
                    e["address"].as_str()?.parse().ok()?,
                ))
            })
            .collect()
    }

    /// SIGTERM (as the kubelet sends), then the exit status.
    fn stop_within(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        wait_for("ferry in the image to exit", timeout, || {
            child.try_wait().ok().flatten()
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// GET `path` over HTTP/1.1: the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// A field of /proc/PID/status.
fn proc_status(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// The options of the mount at `point`, as the process sees its mounts.
fn mount_options(pid: u32, point: &str) -> String {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("/proc/PID/mountinfo");
    info.lines()
        .rev()
        .find_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            (fields.get(4) == Some(&point)).then(|| fields[5].to_string())
        })
        .unwrap_or_else(|| panic!("{point} is not a mount point of {pid}:\n{info}"))
}

#[test]
fn the_image_root_filesystem_runs_the_relay_as_the_image_would() {
    let started = Instant::now();
    let image = Image::build();
    let root = image.root();
    let rootfs_mib = dir_size(&root) / (1 << 20);
    eprintln!("rootfs: {rootfs_mib} MiB, with the binary under test");

    // check-config, on the default rendering and nothing else.
    let data = image.data_volume("check");
    let out = image.ferry_ok(&data, &[], &["check-config"]);
    let rendered = String::from_utf8_lossy(&out.stdout);
    assert!(rendered.contains("relay.example.org"), "{rendered}");

    // A receiving server found by MX, whose certificate the relay must verify.
    let port = free_port(&["127.0.0.2"]);
    let sink = Sink::start(
        &[format!("127.0.0.2:{port}")],
        SinkOptions {
            tls: Some((&image.pki.cert, &image.pki.key)),
            ..SinkOptions::default()
        },
    );
    // The test certificate is for relay.test: that is the MX host's name.
    let dns = Dns::start(&[
        "--mx-host=dest.test,relay.test,10".into(),
        "--host-record=relay.test,127.0.0.2".into(),
    ]);

    // What a laptop cannot give as a pod does: loopback ports picked at
    // run time, the embedded store instead of the rendering's Redis, the
    // TLS secret's files, DNS and the receiving port of this test.
    let (resolver, port) = (dns.address(), port.to_string());
    let env: Vec<(&str, &str)> = vec![
        ("FERRY__STORE__BACKEND", "embedded"),
        ("FERRY__LISTEN__SMTP", "127.0.0.1:0"),
        ("FERRY__LISTEN__SUBMISSION", "127.0.0.1:0"),
        ("FERRY__LISTEN__SUBMISSIONS", "127.0.0.1:0"),
        ("FERRY__LISTEN__DIRECT_SUBMISSION", "127.0.0.1:0"),
        ("FERRY__ADMIN__LISTEN", "127.0.0.1:0"),
        ("FERRY__TLS__CERTIFICATE", "/etc/ferry/tls/tls.crt"),
        ("FERRY__TLS__KEY", "/etc/ferry/tls/tls.key"),
        ("FERRY__DELIVERY__RESOLVER", &resolver),
        ("FERRY__DELIVERY__PORT", &port),
        ("FERRY__DELIVERY__EXTRA_CA_FILES", "/etc/ferry/tls/ca.crt"),
        ("FERRY__DELIVERY__TLS_REQUIRED_DOMAINS", "dest.test"),
    ];

    // Onboarding with the image's own CLI, on the data volume.
    let data = image.data_volume("data");
    image.ferry_ok(&data, &env, &["tenant", "add", TENANT, "--domain", DOMAIN]);
    let out = image.ferry_ok(
        &data,
        &env,
        &[
            "app",
            "add",
            USER,
            "--tenant",
            TENANT,
            "--from",
            SENDER,
            "--allow",
            "127.0.0.0/8",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no password in {stdout}"))
        .to_string();

    let mut relay = Running::start(image.ferry(&data, &env, &["serve", "--role", "all"]));
    let listeners = relay.wait_ready();
    let find = |kind: &str| {
        listeners
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {kind} listener in {listeners:?}"))
    };
    let (admin, submission) = (find("admin"), find("submission"));

    // It is the image's process: chrooted, nonroot, no capabilities, no
    // new privileges, on a read-only root with two writable volumes.
    let pid = relay.pid();
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/root")).expect("root"), root);
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
        Some(root.join("usr/local/bin/ferry"))
    );
    assert_eq!(
        proc_status(pid, "Uid").split_whitespace().collect::<Vec<_>>(),
        ["65532"; 4]
    );
    assert_eq!(
        proc_status(pid, "Gid").split_whitespace().collect::<Vec<_>>(),
        ["65532"; 4]
    );
    assert_eq!(proc_status(pid, "CapEff"), "0000000000000000");
    assert_eq!(proc_status(pid, "CapPrm"), "0000000000000000");
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert!(
        mount_options(pid, "/").split(',').any(|o| o == "ro"),
        "a read-only root"
    );
    for writable in [DATA_DIR, "/tmp"] {
        assert!(
            mount_options(pid, writable).split(',').any(|o| o == "rw"),
            "{writable} is writable"
        );
    }

    // The probes the chart's pods use.
    for path in ["/readyz", "/livez"] {
        let (status, body) = wait_for(&format!("{path} to answer"), Duration::from_secs(10), || {
            http_get(admin, path)
        });
        assert_eq!(status, 200, "{path}: {body}");
    }

    // A message through it: submission with STARTTLS and AUTH, out by MX
    // to the receiving server, with STARTTLS verified (dest.test requires it).
    let mut smtp = Smtp::submission(submission, &image.pki.ca_der);
    let reply = smtp.auth_plain(USER, &password);
    assert!(reply.starts_with("235"), "{reply}");
    let content =
        "From: billing@acme.test\r\nTo: someone@dest.test\r\nSubject: from the image\r\n\r\nHello from a chroot.\r\n";
    let reply = smtp.send_message(SENDER, &["someone@dest.test"], content.as_bytes());
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let received = wait_for("the message at the receiving server", Duration::from_secs(30), || {
        relay.assert_running();
        sink.received_for("someone@dest.test").into_iter().next()
    });
    assert_eq!(received["tls"], true, "{received}");
    assert_eq!(received["mail_from"], SENDER, "{received}");
    let data_text = received["data"].as_str().expect("data");
    assert!(data_text.contains("Subject: from the image"), "{data_text}");
    assert!(data_text.contains("Hello from a chroot."), "{data_text}");

    // SIGTERM: it drains and exits 0 within the pods' grace period.
    let status = relay.stop_within(Duration::from_secs(60));
    assert!(status.success(), "exit {status}; log:\n{}", relay.log_text());
    // What it wrote is on the volume, owned by the image's user.
    let owned_by_nonroot = std::fs::read_dir(&data)
        .expect("read the data volume")
        .filter_map(Result::ok)
        .all(|e| std::os::unix::fs::MetadataExt::uid(&e.metadata().expect("metadata")) == NONROOT);
    assert!(owned_by_nonroot, "files on the data volume belong to 65532");
    eprintln!("image test done in {:.1?}", started.elapsed());
}

/// Bytes in a tree, symbolic links not followed.
fn dir_size(path: &Path) -> u64 {
    let meta = std::fs::symlink_metadata(path).expect("metadata");
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .expect("read_dir")
        .filter_map(Result::ok)
        .map(|e| dir_size(&e.path()))
        .sum()
}
