//! The Helm chart and the plain manifests, checked offline with Helm's own
//! library and the Kubernetes schemas (`tests/clients/chart.py`: lint,
//! render, strict validation for two Kubernetes versions, CRD objects,
//! values the schema refuses, `k8s/` equal to the rendering), then held to
//! the real binary: every rendered `ferry.toml` passes `ferry check-config`,
//! and the ingress and delivery roles started with the default rendering
//! answer on the ports and probe paths the pods name, and drain within the
//! pods' grace period.

use std::process::Command;
use std::time::Duration;

use ferry_testkit::client::Smtp;
use ferry_testkit::servers::{Redis, tool};
use ferry_testkit::{Ferry, binary};
use serde_json::Value;

fn chart_summary() -> Value {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(tool("k8s/bin/python", "FERRY_K8S_PYTHON"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/chart.py"))
        .arg("--chart")
        .arg(format!("{root}/helm/ferry"))
        .arg("--k8s")
        .arg(format!("{root}/k8s"))
        .output()
        .expect("run the chart checks (scripts/install-test-deps.sh installs them)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the chart checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("summary json")
}

/// A node on the rendered configuration; only what a laptop cannot give as
/// a pod does is overridden: loopback ports picked at run time, its own
/// data directory, the test certificate, the test's Redis.
fn node_on(config: &str, redis_url: &str) -> Ferry {
    let mut ferry = Ferry::node(&[]);
    std::fs::write(ferry.config_path(), config).expect("write the rendered config");
    let data = ferry.dir.path().join("data").display().to_string();
    let (cert, key) = (
        ferry.pki.cert.display().to_string(),
        ferry.pki.key.display().to_string(),
    );
    ferry.set(&[
        ("server.data_dir", &data),
        ("listen.smtp", "127.0.0.1:0"),
        ("listen.submission", "127.0.0.1:0"),
        ("listen.submissions", "127.0.0.1:0"),
        ("admin.listen", "127.0.0.1:0"),
        ("tls.certificate", &cert),
        ("tls.key", &key),
        ("store.redis.url", redis_url),
    ]);
    ferry
}

#[test]
fn the_chart_renders_validates_and_runs_the_binary_it_deploys() {
    let summary = chart_summary();
    let cases = summary["cases"].as_object().expect("cases");
    assert!(cases.len() >= 4, "the defaults and three values files: {summary}");
    assert!(summary["refused"].as_array().is_some_and(|r| r.len() >= 5), "{summary}");
    for (name, case) in cases {
        eprintln!("{name}: {}", case["kinds"]);
    }
    for refusal in summary["refused"].as_array().into_iter().flatten() {
        eprintln!("refused: {refusal}");
    }

    // Every rendered configuration is one Ferry accepts.
    for (name, case) in cases {
        let config = case["config"].as_str().expect("config");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, config).expect("write");
        let mut check = Command::new(binary());
        check.arg("check-config").env("FERRY_CONFIG", &path);
        // What the pods get from Secrets.
        let pods = case["pods"].as_object().expect("pods");
        for var in pods
            .values()
            .flat_map(|p| p["secret_env"].as_array().into_iter().flatten())
        {
            let var = var.as_str().expect("name");
            let value = if var.ends_with("REDIS__URL") {
                "rediss://ferry:secret@redis.test:6380/0"
            } else {
                "from-a-secret"
            };
            check.env(var, value);
        }
        let out = check.output().expect("ferry check-config");
        assert!(
            out.status.success(),
            "{name}: ferry check-config refused the rendered ferry.toml:\n{config}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The default rendering, started as the pods start it.
    let default = &cases["default"];
    let config = default["config"].as_str().expect("config");
    let redis = Redis::start();
    let redis_url = redis.url();
    for role in ["ingress", "delivery"] {
        let pod = &default["pods"][role];
        assert_eq!(pod["read_only_root"], true, "{pod}");
        let ports = pod["ports"].as_object().expect("ports");
        let admin_port = ports["admin"].as_u64().expect("admin port");
        assert!(
            config.contains(&format!("listen = \"0.0.0.0:{admin_port}\"")),
            "the admin listener is on the pod's admin port"
        );
        let mut ferry = node_on(config, &redis_url);
        ferry.launch_as(role);
        for path in ["liveness", "readiness", "startup"] {
            let path = pod[path].as_str().expect("probe path");
            let (status, body) = ferry.admin_get(path);
            assert_eq!(status, 200, "{role} {path}: {body}");
        }
        if role == "ingress" {
            for (name, listener) in [("smtp", ferry.smtp), ("submission", ferry.submission)] {
                let port = ports[name].as_u64().expect("container port");
                assert!(
                    config.contains(&format!("{name} = \"0.0.0.0:{port}\"")),
                    "{name} on {port}"
                );
                let (_, greeting) = Smtp::connect(listener.expect("listener"));
                assert!(greeting.starts_with("220"), "{name}: {greeting}");
            }
            let port = ports["submissions"].as_u64().expect("container port");
            assert!(config.contains(&format!("submissions = \"0.0.0.0:{port}\"")));
            let (_, greeting) = Smtp::connect_tls(ferry.submissions.expect("465"), &ferry.pki.ca_der);
            assert!(greeting.starts_with("220"), "submissions: {greeting}");
        } else {
            assert!(ferry.smtp.is_none(), "a delivery pod opens no SMTP listener");
        }
        // After preStop's sleep, SIGTERM: the pod must be gone before the
        // kubelet's SIGKILL at the end of its grace period.
        let grace = pod["termination_grace"].as_u64().expect("grace") - pod["pre_stop"].as_u64().unwrap_or(0);
        let status = ferry.stop_within(Duration::from_secs(grace));
        assert!(
            status.success(),
            "{role} drained and exited 0 within {grace} s: {status}"
        );
    }
}
