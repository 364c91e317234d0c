//! The Helm chart and the plain manifests, checked offline with Helm's own
//! library and the Kubernetes schemas (`tests/clients/chart.py`: lint,
//! render, strict validation for two Kubernetes versions, the CRD objects
//! against their published schemas, values the schema or the templates
//! refuse, each balancer kind, KEDA's replica table, `helm package`, `k8s/`
//! equal to the rendering), then held to the real binary: every rendered
//! `ferry.toml` (and inbound pods' `inbound.toml`) passes `ferry
//! check-config`, the ingress and delivery roles started with the default
//! rendering, and the inbound role with the defaults plus `inbound.enabled`,
//! answer on the ports and probe paths the pods name and drain within the
//! pods' grace period, and behind a PROXY balancer the in-cluster submission
//! listener greets a pod without a header while the balancer's listener
//! still refuses one.

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

/// The aws-nlb rendering's ingress, with loopback playing the balancer:
/// a pod's connection to the in-cluster submission listener is greeted
/// without a header, and the balancer's listener still refuses one.
fn direct_submission_behind_a_proxy_balancer(config: &Value) {
    let config = config.as_str().expect("the aws-nlb rendering's ferry.toml");
    assert!(config.contains("direct_submission = \"0.0.0.0:2588\""), "{config}");
    let redis = Redis::start();
    let mut ferry = node_on(config, &redis.url());
    ferry.set(&[
        ("listen.direct_submission", "127.0.0.1:0"),
        ("listen.proxy_protocol_from", "127.0.0.0/8"),
    ]);
    ferry.launch_as("ingress");
    let (_, greeting) = Smtp::connect(ferry.direct_submission.expect("the direct listener"));
    assert!(
        greeting.starts_with("220"),
        "no header needed in the cluster: {greeting}"
    );
    let mut through_balancer = Smtp::raw_from(ferry.submission.expect("submission"), [127, 0, 0, 1].into());
    through_balancer.send(b"EHLO pod.test\r\n");
    assert_eq!(
        through_balancer.read_reply(),
        "",
        "the balancer's listener needs its header"
    );
    assert!(ferry.stop().success());
}

/// The inbound MX's rendering (the defaults and `inbound.enabled`), started
/// as its pods start it: `serve --role inbound` on `inbound.toml` opens only
/// the inbound listener, which greets anyone, offers STARTTLS and never
/// AUTH; the probes answer and the pod drains within its grace.
fn inbound_role_as_its_pods_run_it(inbound: &Value, redis_url: &str) {
    assert_eq!(inbound["enabled"], true, "{inbound}");
    let config = inbound["config"].as_str().expect("inbound.toml");
    let pod = &inbound["pods"]["inbound"];
    assert_eq!(pod["init"], serde_json::json!([]), "inbound pods import nothing: {pod}");
    let port = pod["ports"]["inbound"].as_u64().expect("the pods' inbound port");
    assert!(
        config.contains(&format!("inbound = \"0.0.0.0:{port}\"")),
        "listen.inbound on the pods' port {port}:\n{config}"
    );
    assert!(
        !config.contains("submission") && !config.contains("smtp ="),
        "no submission listener in inbound.toml:\n{config}"
    );
    assert_eq!(
        inbound["service"]["type"], "LoadBalancer",
        "the MX is reached from the Internet: {inbound}"
    );
    let mut ferry = node_on(config, redis_url);
    ferry.set(&[("listen.inbound", "127.0.0.1:0")]);
    ferry.launch_as("inbound");
    for path in ["liveness", "readiness", "startup"] {
        let path = pod[path].as_str().expect("probe path");
        let (status, body) = ferry.admin_get(path);
        assert_eq!(status, 200, "inbound {path}: {body}");
    }
    assert!(
        ferry.smtp.is_none() && ferry.submission.is_none() && ferry.submissions.is_none(),
        "an inbound pod opens no submission listener"
    );
    let (mut mta, greeting) = Smtp::connect(ferry.inbound.expect("the inbound listener"));
    assert!(greeting.starts_with("220"), "inbound: {greeting}");
    let ehlo = mta.cmd("EHLO mta.example.net");
    assert!(
        ehlo.starts_with("250") && ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "STARTTLS offered, AUTH never: {ehlo}"
    );
    assert_eq!(mta.cmd("QUIT").get(..3), Some("221"));
    let grace = pod["termination_grace"].as_u64().expect("grace") - pod["pre_stop"].as_u64().unwrap_or(0);
    let status = ferry.stop_within(Duration::from_secs(grace));
    assert!(
        status.success(),
        "inbound drained and exited 0 within {grace} s: {status}"
    );
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
    for refusal in ["refused", "render_refused", "crd_typos"]
        .iter()
        .flat_map(|k| summary[k].as_array().into_iter().flatten())
    {
        eprintln!("refused: {refusal}");
    }
    let package = &summary["package"];
    eprintln!("helm package: {} {}", package["file"], package["digest"]);
    assert!(
        package["digest"].as_str().is_some_and(|d| d.starts_with("sha256:")),
        "{package}"
    );
    assert_eq!(
        summary["crd_typos"].as_array().map(Vec::len),
        Some(6),
        "each misspelt field fails"
    );
    assert!(
        summary["render_refused"].as_array().is_some_and(|r| r.len() >= 15),
        "{summary}"
    );

    // Scaling that fails safe: by default only resource metrics, and KEDA
    // bounded whatever the queue holds.
    assert_eq!(cases["default"]["hpa_metrics"], serde_json::json!(["Resource"]));
    let keda = &cases["cluster-keda"]["keda"];
    eprintln!("KEDA replicas asked for: {keda}");
    let (min, max) = (keda["min"].as_u64().expect("min"), keda["max"].as_u64().expect("max"));
    assert_eq!(keda["0 due"], min, "{keda}");
    assert_eq!(keda["1000 due"], min, "1,000 due at 500 a replica: {keda}");
    assert_eq!(keda["100000 due"], max, "{keda}");
    let stuck = keda["1 due, stuck for a day"].as_u64().expect("stuck");
    assert!(
        stuck > min && stuck < max,
        "one stuck message adds a step, never the maximum: {keda}"
    );
    assert!(
        keda["metric missing"].as_u64().is_some_and(|n| n >= min && n <= max),
        "{keda}"
    );
    // One way of being scraped; delivery mounts no certificate or DKIM keys.
    for (name, case) in cases {
        for (role, pod) in case["pods"].as_object().expect("pods") {
            assert_ne!(
                pod["scrape_annotations"], case["service_monitor"],
                "{name} {role}: scraped once"
            );
            assert_eq!(pod["init_resources"], true, "{name} {role}");
            if role == "delivery" {
                let volumes = pod["volumes"].to_string();
                assert!(
                    !volumes.contains("dkim") && !volumes.contains("\"tls\""),
                    "{name}: {volumes}"
                );
            }
            if role == "inbound" {
                let volumes = pod["volumes"].to_string();
                assert!(!volumes.contains("dkim"), "{name}: {volumes}");
                assert_eq!(pod["init"], serde_json::json!([]), "{name}: {pod}");
            }
        }
    }
    direct_submission_behind_a_proxy_balancer(&summary["balancers"]["aws-nlb"]["config"]);

    // The inbound MX is off by default: nothing of it is rendered.
    assert_eq!(
        cases["default"]["inbound"]["enabled"], false,
        "{}",
        cases["default"]["inbound"]
    );
    assert!(cases["default"]["inbound_config"].is_null());
    assert!(cases["default"]["pods"].get("inbound").is_none());

    // Every rendered configuration is one Ferry accepts.
    let configs = cases.iter().flat_map(|(name, case)| {
        [
            ("ferry.toml", &case["config"]),
            ("inbound.toml", &case["inbound_config"]),
        ]
        .into_iter()
        .filter_map(move |(file, config)| Some((format!("{name} {file}"), config.as_str()?, case)))
    });
    let inbound = (
        "inbound inbound.toml".to_string(),
        summary["inbound"]["config"].as_str().expect("inbound.toml"),
        &summary["inbound"],
    );
    for (name, config, case) in configs.chain([inbound]) {
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
            "{name}: ferry check-config refused the rendered configuration:\n{config}\n{}",
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
    inbound_role_as_its_pods_run_it(&summary["inbound"], &redis_url);
}
