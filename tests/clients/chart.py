#!/usr/bin/env python3
"""Checks Ferry's Helm chart offline with Helm's own library (helm-python-sdk
binds Helm's Go SDK) and the Kubernetes schemas (kubernetes-validate):

- `helm lint --strict` finds nothing, for the default values and each
  values file in helm/ferry/ci/;
- each renders, and every object passes strict schema validation for two
  Kubernetes versions; the objects of CRDs (KEDA, Prometheus Operator,
  cert-manager) are held to their published CRDs' required fields;
- values that break values.schema.json, or that the templates refuse
  (`fail`: a balancer that would drop sessions or merge clients, keys of
  `config` the chart owns, min above max), are refused with a message naming
  the value;
- each balancer kind renders the Service annotations, traffic policy,
  PROXY trust and NetworkPolicy it needs, for the SMTP Service and the
  inbound MX's alike;
- the inbound MX (inbound.enabled): its own Deployment running `serve
  --role inbound` on its own inbound.toml (listen.inbound, no submission
  listener), HPA, PDB and spread, a Service mapping 25 to it, port 25 in the
  NetworkPolicy's SMTP rule; in single mode the one pod opens it; off by
  default, and then none of it is rendered;
- the KEDA ScaledObject asks for a bounded number of replicas (a table from
  KEDA's and the HPA's documented formulas);
- the CRD objects hold to their published schemas, and misspelt fields fail;
- `helm package` makes the chart's archive (its digest is printed);
- k8s/ferry.yaml is the rendering of the default values;
- yamllint accepts the rendered manifests and k8s/.

Prints a JSON summary for tests/chart.rs: each rendering's ferry.toml and
what the pods promise (ports, probe paths, grace periods), which the Rust
test then holds the real binary to. Any failed check exits non-zero.
"""
import argparse
import json
import pathlib
import sys
import tempfile
import tomllib

import crds
import helm_python as helm
import kubernetes_validate
import yaml
from yamllint import config as yamllint_config
from yamllint import linter

KUBERNETES = ["1.30.0", "1.33.0"]

# The chart has no default balancer (no guess is safe): every rendering
# names one. The "default" case, and k8s/, are the defaults plus this.
BALANCER_NONE = {"proxyProtocol": {"balancer": "none"}}

# Values that must be refused, and the word the refusal must name: by the
# schema (BAD_VALUES) or by the templates at install (BAD_RENDERS).
BAD_VALUES = [
    ({"mode": "multi"}, "mode"),
    ({"imagePullSecrets": ["regcred"]}, "imagePullSecrets"),
    ({"redis": {"sentinels": ["s-0:26379"]}}, "masterName"),
    ({"proxyProtocol": {"balancer": "elb"}}, "balancer"),
    ({"ingress": {"pdb": {"unhealthyPodEvictionPolicy": "Sometimes"}}}, "unhealthyPodEvictionPolicy"),
    ({"drain": {"graceSeconds": 0, "preStopSeconds": 10}}, "graceSeconds"),
    ({"contract": {"currency": "euro"}}, "currency"),
    ({"ingress": {"replicas": "two"}}, "replicas"),
    ({"redis": {"url": "", "existingSecret": ""}}, "redis"),
    ({"servcie": {"type": "LoadBalancer"}}, "servcie"),
    ({"proxyProtocol": {"balancer": "haproxy", "from": ["everyone"]}}, "from"),
    ({"keda": {"enabled": True}, "mode": "single"}, "mode"),
    ({"alerts": {"webhookUrl": "https://finance.example.org/ferry"}}, "webhookSecret"),
    ({"inbound": {"service": {"type": "External"}}}, "inbound"),
]

_KEDA_OK = {"keda": {"enabled": True, "prometheusServer": "http://prometheus:9090"}, "serviceMonitor": {"enabled": True}}
BAD_RENDERS = [
    ({}, "proxyProtocol.balancer"),
    ({"proxyProtocol": {"balancer": "aws-nlb"}}, "proxyProtocol.from"),
    ({"proxyProtocol": {"balancer": "metallb", "from": ["10.0.0.0/8"]}}, "proxyProtocol.from"),
    ({"proxyProtocol": {"balancer": "gcp"}, "service": {"externalTrafficPolicy": "Cluster"}}, "externalTrafficPolicy"),
    ({"proxyProtocol": {"balancer": "none"}, "service": {"type": "NodePort", "externalTrafficPolicy": "Cluster"}},
     "externalTrafficPolicy"),
    ({"proxyProtocol": {"balancer": "aws-nlb", "from": ["10.0.0.0/16"]}, "service": {"type": "ClusterIP"}},
     "service.type"),
    ({"config": {"admin": {"listen": "0.0.0.0:9000"}}}, "admin.port"),
    ({"config": {"admin": {"tls": True}}}, "config.admin"),
    ({"config": {"listen": {"smtp": "0.0.0.0:25"}}}, "config.listen"),
    ({"config": {"server": {"shutdown_grace_secs": 600}}}, "drain.graceSeconds"),
    ({"config": {"server": {"data_dir": "/data"}}}, "config.server.data_dir"),
    ({"config": {"store": {"redis": {"url": "redis://elsewhere:6379"}}}}, "redis.existingSecret"),
    ({"config": {"store": {"backend": "embedded"}}}, "config.store.backend"),
    ({"config": {"tls": {"certificate": "/x.pem"}}}, "tls.existingSecret"),
    ({"ingress": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}}, "ingress.autoscaling.minReplicas"),
    ({"delivery": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}}, "delivery.autoscaling.minReplicas"),
    ({"keda": {"enabled": True, "prometheusServer": "http://prometheus:9090"}}, "serviceMonitor.enabled"),
    ({"keda": {"enabled": True}, "serviceMonitor": {"enabled": True}}, "keda.prometheusServer"),
    (dict(_KEDA_OK, keda=dict(_KEDA_OK["keda"], fallbackReplicas=50)), "keda.fallbackReplicas"),
    ({"proxyProtocol": {"balancer": "gcp"}, "inbound": {"enabled": True, "service": {"externalTrafficPolicy": "Cluster"}}},
     "inbound.service.externalTrafficPolicy"),
    ({"proxyProtocol": {"balancer": "aws-nlb", "from": ["10.0.0.0/16"]},
      "inbound": {"enabled": True, "service": {"type": "NodePort"}}}, "inbound.service.type"),
    ({"inbound": {"enabled": True, "autoscaling": {"minReplicas": 5, "maxReplicas": 3}}},
     "inbound.autoscaling.minReplicas"),
]

# The inbound MX on top of the defaults: the rendering tests/chart.rs starts
# as `serve --role inbound`. With a certificate (STARTTLS on the MX too), and
# DKIM keys and an admin token, which only the ingress pods import.
INBOUND = {**BALANCER_NONE, "inbound": {"enabled": True}, "tls": {"existingSecret": "relay-tls"},
           "dkim": {"existingSecret": "ferry-dkim"}, "adminToken": {"existingSecret": "ferry-admin"}}

# Each balancer kind: the values that choose it, and what it must render.
BALANCERS = {
    "aws-nlb": {"from": ["10.0.0.0/16"], "proxy": True, "etp": "Cluster",
                "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "external",
                                "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
                                "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol": "*"}},
    "haproxy": {"from": ["192.0.2.10/32", "192.0.2.11/32"], "proxy": True, "etp": "Cluster", "annotations": {}},
    "custom": {"from": [{"cidr": "10.0.0.0/16", "except": ["10.0.64.0/18"]}], "proxy": True, "etp": "Cluster",
               "annotations": {"service.beta.kubernetes.io/do-loadbalancer-enable-proxy-protocol": "true"},
               "service": {"annotations": {"service.beta.kubernetes.io/do-loadbalancer-enable-proxy-protocol": "true"}}},
    "gcp": {"proxy": False, "etp": "Local", "annotations": {}},
    "azure": {"proxy": False, "etp": "Local", "annotations": {}},
    "metallb": {"proxy": False, "etp": "Local", "annotations": {}},
    "none": {"proxy": False, "etp": "Local", "annotations": {}},
}


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def documents(rendered):
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            docs.extend((path, d) for d in yaml.safe_load_all(text) if d)
    return docs


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the ConfigMap's ferry.toml) as readable blocks."""


_Dumper.add_representer(
    str,
    lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None),
)


def manifest(rendered):
    """The rendering as one file, as k8s/ferry.yaml holds it."""
    parts = []
    for path, text in sorted(rendered.items()):
        if not path.endswith(".yaml"):
            continue
        for d in yaml.safe_load_all(text):
            if d:
                parts.append(f"# Source: {path}\n" + yaml.dump(d, Dumper=_Dumper, sort_keys=False))
    return "---\n".join(parts)


def validate(path, doc):
    # The Operator's objects, held to their published CRDs (tests/clients/crds/).
    try:
        if crds.validate(doc):
            return ["crd"]
    except AssertionError as e:
        raise AssertionError(f"{path}: {e}") from e
    for version in KUBERNETES:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{path} {doc['kind']} for Kubernetes {version}: {e.message}") from e
    return KUBERNETES


def pod_facts(docs):
    """What the chart's pods promise, per role."""
    facts = {}
    for _, d in docs:
        if d["kind"] != "Deployment":
            continue
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        facts[c["args"][-1]] = {
            "ports": {p["name"]: p["containerPort"] for p in c["ports"]},
            "liveness": c["livenessProbe"]["httpGet"]["path"],
            "readiness": c["readinessProbe"]["httpGet"]["path"],
            "startup": c["startupProbe"]["httpGet"]["path"],
            "termination_grace": spec["terminationGracePeriodSeconds"],
            "pre_stop": c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0),
            "read_only_root": c["securityContext"]["readOnlyRootFilesystem"],
            "init": [i["args"] for i in spec.get("initContainers", [])],
            "init_resources": all("resources" in i for i in spec.get("initContainers", [])),
            "volumes": sorted(v["name"] for v in spec["volumes"]),
            "scrape_annotations": "prometheus.io/scrape" in d["spec"]["template"]["metadata"].get("annotations", {}),
            "secret_env": sorted(e["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})),
        }
    return facts


def find(docs, kind, name_suffix=""):
    return [d for _, d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]


def render_fails(chart, values):
    """The error a rendering (schema included) stops with, or None."""
    try:
        chart.validate_schema(values)
        chart.render(values, name="ferry", namespace="mail", is_install=True)
    except (helm.HelmValuesError, helm.HelmRenderError) as e:
        return " ".join(str(e).split())
    return None


def check_balancers(chart):
    """Each balancer kind renders what it needs, on the SMTP Service and the
    inbound MX's (enabled here) alike; returns what each rendered."""
    seen = {}
    for kind, want in BALANCERS.items():
        values = {"proxyProtocol": {"balancer": kind, "from": want.get("from", [])},
                  "inbound": {"enabled": True, "service": want.get("service", {})}}
        if "service" in want:
            values["service"] = want["service"]
        docs = documents(chart.render(values, name="ferry", namespace="mail", is_install=True))
        for path, doc in docs:
            validate(path, doc)
        for service in ("smtp", "inbound"):
            (svc,) = find(docs, "Service", f"-{service}")
            annotations = svc["metadata"].get("annotations", {})
            for key, value in want["annotations"].items():
                check(annotations.get(key) == value,
                      f"{kind}: the {service} Service lacks {key}: {value}: {annotations}")
            if not want["annotations"]:
                check(not annotations, f"{kind}: no balancer annotations expected on {service}: {annotations}")
            etp = svc["spec"].get("externalTrafficPolicy")
            check(etp == want["etp"], f"{kind}: {service} externalTrafficPolicy {etp}, want {want['etp']}")
        data = find(docs, "ConfigMap")[0]["data"]
        config = data["ferry.toml"]
        for key in ("ferry.toml", "inbound.toml"):
            trusted = "proxy_protocol_from" in tomllib.loads(data[key])["listen"]
            check(trusted == want["proxy"], f"{kind}: PROXY trust in {key} is {trusted}:\n{data[key]}")
        policy = find(docs, "NetworkPolicy")[0]["spec"]["ingress"]
        smtp_rule = next(r for r in policy if {"port": "smtp", "protocol": "TCP"} in r["ports"])
        check({"port": "inbound", "protocol": "TCP"} in smtp_rule["ports"],
              f"{kind}: the inbound MX is admitted as SMTP is: {smtp_rule}")
        if want["proxy"]:
            blocks = [p["ipBlock"] for p in smtp_rule.get("from", [])]
            expected = [b if isinstance(b, dict) else {"cidr": b} for b in want["from"]]
            check(blocks == expected, f"{kind}: SMTP admitted from {blocks}, want only the balancer's {expected}")
        else:
            check("from" not in smtp_rule, f"{kind}: a passthrough balancer keeps clients' addresses: {smtp_rule}")
        direct = find(docs, "Service", "-submission")
        check(len(direct) == 1 and direct[0]["spec"]["type"] == "ClusterIP"
              and direct[0]["spec"]["ports"][0]["targetPort"] == "direct-submit",
              f"{kind}: the in-cluster submission Service: {direct}")
        check("direct_submission = \"0.0.0.0:2588\"" in config, f"{kind}: the direct listener:\n{config}")
        direct_rule = next(r for r in policy if {"port": "direct-submit", "protocol": "TCP"} in r["ports"])
        namespaces = direct_rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"]
        check(namespaces == ["mail"], f"{kind}: in-cluster submission from {namespaces}")
        seen[kind] = {"annotations": annotations, "externalTrafficPolicy": etp, "proxy": trusted,
                      "smtp_from": [p["ipBlock"] for p in smtp_rule.get("from", [])], "config": config}
    return seen


INBOUND_PORT = {"port": "inbound", "protocol": "TCP"}
SUBMISSION_LISTENERS = ("smtp", "submission", "submissions", "direct_submission")


def check_inbound(docs, values):
    """The inbound MX as `values` ask for it (inbound.enabled), or nothing of
    it: a Deployment running `serve --role inbound` on inbound.toml (only
    listen.inbound, on the pods' inbound port), its HPA, PDB and spread, a
    Service mapping 25 to that port behind the SMTP Service's balancer rules,
    and the port in the NetworkPolicy's SMTP rule (the same sources). In
    single mode the one pod opens the listener from ferry.toml. Returns what
    it found."""
    enabled = values.get("inbound", {}).get("enabled", False)
    single = values.get("mode") == "single"
    objects = sorted(f"{d['kind']}/{d['metadata']['name']}" for _, d in docs
                     if d["metadata"]["name"].endswith("-inbound"))
    data = find(docs, "ConfigMap")[0]["data"]
    listen = tomllib.loads(data["ferry.toml"])["listen"]
    policies = find(docs, "NetworkPolicy")
    smtp_rule = next((r for p in policies for r in p["spec"]["ingress"]
                      if {"port": "smtp", "protocol": "TCP"} in r["ports"]), None)
    pods = {d["spec"]["template"]["spec"]["containers"][0]["args"][-1]: d for d in find(docs, "Deployment")}
    container_ports = {role: {p["name"]: p["containerPort"]
                              for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]}
                       for role, d in pods.items()}
    if not enabled:
        check(not objects, f"inbound is off, yet: {objects}")
        check("inbound.toml" not in data and "inbound" not in listen, f"inbound is off, yet listened for: {listen}")
        check(smtp_rule is None or INBOUND_PORT not in smtp_rule["ports"], f"inbound is off, yet admitted: {smtp_rule}")
        check(all("inbound" not in p for p in container_ports.values()), f"inbound is off, yet a port: {container_ports}")
        return {"enabled": False}
    role = "all" if single else "inbound"
    port = container_ports[role].get("inbound")
    check(port is not None, f"the {role} pod has no inbound port: {container_ports}")
    (svc,) = find(docs, "Service", "-inbound")
    (smtp,) = find(docs, "Service", "-smtp")
    check(svc["spec"]["ports"] == [{"name": "inbound", "port": 25, "targetPort": "inbound", "protocol": "TCP"}],
          f"the inbound Service maps 25 to the pods' inbound port: {svc['spec']['ports']}")
    check(svc["spec"]["selector"].get("app.kubernetes.io/component") == role, f"the inbound Service selects {role}")
    if svc["spec"]["type"] == smtp["spec"]["type"]:
        check(svc["spec"].get("externalTrafficPolicy") == smtp["spec"].get("externalTrafficPolicy"),
              f"the inbound Service's traffic policy is SMTP's: {svc['spec']} {smtp['spec']}")
    # What the balancer adds to the SMTP Service, it adds to the inbound MX's.
    own = values.get("service", {}).get("annotations", {})
    balancers = {k: v for k, v in smtp["metadata"].get("annotations", {}).items() if k not in own}
    annotations = svc["metadata"].get("annotations", {})
    check(balancers.items() <= annotations.items(),
          f"the inbound Service lacks the balancer's {balancers}: {annotations}")
    if smtp_rule is not None:
        check(INBOUND_PORT in smtp_rule["ports"], f"the NetworkPolicy's SMTP rule lacks the inbound MX: {smtp_rule}")
    facts = {"enabled": True, "objects": objects, "service": {"type": svc["spec"]["type"], "annotations": annotations,
             "externalTrafficPolicy": svc["spec"].get("externalTrafficPolicy")}, "pod_port": port}
    if single:
        check(listen.get("inbound") == f"0.0.0.0:{port}", f"the single node listens for reports on {port}: {listen}")
        check("inbound.toml" not in data and not find(docs, "Deployment", "-inbound"), "single mode: one pod, one file")
        return facts
    inbound = tomllib.loads(data["inbound.toml"])["listen"]
    check(inbound.get("inbound") == f"0.0.0.0:{port}", f"inbound.toml listens on the pods' port {port}: {inbound}")
    check(not any(k in inbound for k in SUBMISSION_LISTENERS), f"inbound.toml opens submission listeners: {inbound}")
    check("inbound" not in listen, f"ingress and delivery listen for reports: {listen}")
    check(inbound.get("proxy_protocol_from") == listen.get("proxy_protocol_from"), "the same PROXY trust as SMTP")
    dep = pods["inbound"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    check(c["args"] == ["serve", "--role", "inbound"], c["args"])
    check(set(container_ports["inbound"]) == {"inbound", "admin"}, f"inbound pods open the MX only: {container_ports}")
    mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
    check(mount["subPath"] == "inbound.toml", f"inbound pods read inbound.toml: {mount}")
    check(not pod.get("initContainers"), "inbound pods import no DKIM keys or tokens")
    volumes = {r: {v["name"] for v in d["spec"]["template"]["spec"]["volumes"]} for r, d in pods.items()}
    check("dkim" not in volumes["inbound"], f"inbound pods mount no DKIM keys: {volumes['inbound']}")
    check(("tls" in volumes["ingress"]) == ("tls" in volumes["inbound"]),
          f"the MX's STARTTLS has the certificate: {volumes}")
    checksums = {r: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for r, d in pods.items()}
    check(checksums["inbound"] != checksums["ingress"] == checksums["delivery"], f"each file rolls its pods: {checksums}")
    selector = {"app.kubernetes.io/name": "ferry", "app.kubernetes.io/instance": "ferry",
                "app.kubernetes.io/component": "inbound"}
    check(dep["spec"]["selector"]["matchLabels"] == selector, dep["spec"]["selector"])
    spread = values.get("inbound", {}).get("topologySpreadConstraints")
    if not spread:
        check([t["topologyKey"] for t in pod["topologySpreadConstraints"]]
              == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
              and all(t["labelSelector"]["matchLabels"] == selector for t in pod["topologySpreadConstraints"]),
              f"inbound pods spread over zones and nodes: {pod['topologySpreadConstraints']}")
    (pdb,) = find(docs, "PodDisruptionBudget", "-inbound")
    check(pdb["spec"]["selector"]["matchLabels"] == selector, pdb["spec"])
    autoscaling = values.get("inbound", {}).get("autoscaling", {}).get("enabled", True)
    hpa = find(docs, "HorizontalPodAutoscaler", "-inbound")
    check(len(hpa) == int(autoscaling), f"an HPA for inbound iff inbound.autoscaling.enabled: {hpa}")
    if hpa:
        check(hpa[0]["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], hpa[0]["spec"])
        facts["hpa_metrics"] = sorted(m["type"] for m in hpa[0]["spec"]["metrics"])
    check(not [d for d in find(docs, "ScaledObject") if d["spec"]["scaleTargetRef"]["name"].endswith("-inbound")],
          "no KEDA for inbound")
    return facts


def keda_replicas(scaled, due, oldest_seconds):
    """The replicas KEDA's HPA asks for when the two series have these
    values: the trigger's query evaluated as PromQL evaluates scalar
    arithmetic (`> bool` is 1 or 0), then, for an AverageValue target,
    ceil(value / threshold) (the HPA's formula with the per-pod average of
    an external metric), held within min and max. None: the metric is
    missing, which with ignoreNullValues "false" is an error, so after
    fallback.failureThreshold polls KEDA asks for fallback.replicas."""
    import math
    import re
    spec = scaled["spec"]
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    check(meta.get("ignoreNullValues") == "false", f"a missing metric must be an error: {meta}")
    check(trigger.get("metricType", "AverageValue") == "AverageValue", trigger)
    if due is None:
        return spec["fallback"]["replicas"]
    query = meta["query"]
    query = re.sub(r"max\(ferry_queue_due_messages\{[^}]*\}\)", str(due), query)
    query = re.sub(r"max\(ferry_queue_oldest_due_seconds\{[^}]*\}\)", str(oldest_seconds), query)
    query = query.replace("> bool", ">")
    check(re.fullmatch(r"[0-9ceil()+*/> .\n]+", query), f"the query is not scalar arithmetic: {query}")
    value = eval(query, {"__builtins__": {}}, {"ceil": math.ceil})  # noqa: S307 (digits and operators only)
    asked = math.ceil(float(value) / float(meta["threshold"]))
    return max(spec["minReplicaCount"], min(spec["maxReplicaCount"], asked))


def inbound_rendering(chart):
    """The defaults with the inbound MX on (INBOUND), checked like a case:
    its inbound.toml and what its pods promise, for tests/chart.rs to start."""
    chart.validate_schema(INBOUND)
    rendered = chart.render(INBOUND, name="ferry", namespace="mail", is_install=True)
    docs = documents(rendered)
    for path, doc in docs:
        validate(path, doc)
    lint_yaml(manifest(rendered), "the inbound rendering")
    facts = check_inbound(docs, INBOUND)
    check(facts.get("hpa_metrics") == ["Resource"], f"the inbound HPA scales on CPU by default: {facts}")
    data = find(docs, "ConfigMap")[0]["data"]
    return {**facts, "config": data["inbound.toml"], "pods": pod_facts(docs)}


def keda_table(docs):
    (scaled,) = find(docs, "ScaledObject")
    spec = scaled["spec"]
    check("fallback" in spec and spec["fallback"]["failureThreshold"] >= 1, f"no fallback: {spec}")
    check("cooldownPeriod" not in spec or spec["minReplicaCount"] == 0, "cooldownPeriod does nothing above zero")
    rows = {f"{n} due": keda_replicas(scaled, n, 0) for n in (0, 1, 1000, 100000)}
    rows["1 due, stuck for a day"] = keda_replicas(scaled, 1, 86400)
    rows["100000 due, stuck for a day"] = keda_replicas(scaled, 100000, 86400)
    rows["metric missing"] = keda_replicas(scaled, None, None)
    rows["min"], rows["max"] = spec["minReplicaCount"], spec["maxReplicaCount"]
    return rows


def check_knobs(chart):
    """The standard knobs: name overrides, common labels and annotations, an
    image by digest, a priority class, pull secrets by name, the role's own
    topology spread, an existing claim for the single node's store."""
    digest = "sha256:" + "ab" * 32
    spread = [{"maxSkew": 2, "topologyKey": "topology.kubernetes.io/region", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "all"}}}]
    values = {**BALANCER_NONE, "mode": "single", "fullnameOverride": "relay", "commonLabels": {"team": "mail"},
              "commonAnnotations": {"owner": "platform"}, "image": {"digest": digest}, "priorityClassName": "mail-critical",
              "imagePullSecrets": [{"name": "regcred"}], "ingress": {"topologySpreadConstraints": spread},
              "persistence": {"existingClaim": "relay-store"}}
    chart.validate_schema(values)
    docs = documents(chart.render(values, name="ferry", namespace="mail", is_install=True))
    for path, doc in docs:
        validate(path, doc)
        meta = doc["metadata"]
        check(meta["name"].startswith("relay"), f"{doc['kind']} {meta['name']}: fullnameOverride")
        check(meta["labels"].get("team") == "mail", f"{doc['kind']} {meta['name']}: commonLabels")
        check(meta.get("annotations", {}).get("owner") == "platform", f"{doc['kind']} {meta['name']}: commonAnnotations")
    check(not find(docs, "PersistentVolumeClaim"), "existingClaim: no claim of the chart's")
    (pod,) = [d["spec"]["template"]["spec"] for d in find(docs, "Deployment")]
    check(pod["priorityClassName"] == "mail-critical", pod)
    check(pod["imagePullSecrets"] == [{"name": "regcred"}], pod)
    check(pod["topologySpreadConstraints"] == spread, pod["topologySpreadConstraints"])
    check(pod["containers"][0]["image"].endswith("@" + digest), pod["containers"][0]["image"])
    claim = next(v for v in pod["volumes"] if v["name"] == "data")["persistentVolumeClaim"]["claimName"]
    check(claim == "relay-store", claim)
    return sorted({d["kind"] for _, d in docs})


# Misspelt fields in each CRD object: each must fail validation.
def _typos():
    def so_field(d):
        d["spec"]["cooldownPerod"] = 300

    def so_type(d):
        d["spec"]["triggers"][0]["type"] = "prometeus"

    def so_meta(d):
        meta = d["spec"]["triggers"][0]["metadata"]
        meta["treshold"] = meta.pop("threshold")

    def sm_endpoint(d):
        d["spec"]["endpoints"][0]["intervall"] = d["spec"]["endpoints"][0].pop("interval")

    def pr_rule(d):
        rule = d["spec"]["groups"][0]["rules"][0]
        rule["expresion"] = rule.pop("expr")

    def cert(d):
        d["spec"]["dnsName"] = d["spec"].pop("dnsNames")

    return [("ScaledObject", "spec.cooldownPerod", so_field), ("ScaledObject", "trigger type prometeus", so_type),
            ("ScaledObject", "trigger metadata treshold", so_meta), ("ServiceMonitor", "endpoint intervall", sm_endpoint),
            ("PrometheusRule", "rule expresion", pr_rule), ("Certificate", "spec.dnsName", cert)]


def check_typos(docs_by_kind):
    import copy
    refused = []
    for kind, what, spoil in _typos():
        doc = copy.deepcopy(docs_by_kind[kind])
        spoil(doc)
        try:
            validate("typo", doc)
        except AssertionError as e:
            refused.append(f"{kind} {what}: {' '.join(str(e).split())[:160]}")
            continue
        raise AssertionError(f"{kind} with {what} was accepted")
    return refused


def lint_yaml(text, what):
    conf = yamllint_config.YamlLintConfig(
        "extends: default\nrules: {line-length: {max: 200}, document-start: disable, comments: disable,"
        " indentation: {spaces: 2, indent-sequences: consistent}}")
    problems = [p for p in linter.run(text, conf) if p.level == "error"]
    check(not problems, f"yamllint on {what}: {problems[:5]}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--chart", required=True)
    parser.add_argument("--k8s", required=True, help="the plain manifests' directory")
    parser.add_argument("--write-k8s", action="store_true", help="write k8s/ferry.yaml instead of comparing")
    args = parser.parse_args()
    chart_dir = pathlib.Path(args.chart)
    chart = helm.Chart.load(str(chart_dir))
    cases = {"default": BALANCER_NONE}
    for f in sorted((chart_dir / "ci").glob("*-values.yaml")):
        cases[f.name.removesuffix("-values.yaml")] = yaml.safe_load(f.read_text())
    summary = {"cases": {}}
    crd_docs = {}
    for name, values in cases.items():
        report = helm.lint(str(chart_dir), values, strict=True, namespace="mail", kube_version="v1.30.0")
        findings = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        check(not findings and not report.get("errors"), f"helm lint ({name}): {findings} {report.get('errors')}")
        chart.validate_schema(values)
        rendered = chart.render(values, name="ferry", namespace="mail", is_install=True)
        docs = documents(rendered)
        kinds = {}
        for path, doc in docs:
            validate(path, doc)
            kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
            crd_docs.setdefault(doc["kind"], doc)
        hpa_metrics = sorted({m["type"] for h in find(docs, "HorizontalPodAutoscaler") for m in h["spec"]["metrics"]})
        lint_yaml(manifest(rendered), f"the {name} rendering")
        data = next(d for _, d in docs if d["kind"] == "ConfigMap")["data"]
        summary["cases"][name] = {"kinds": kinds, "config": data["ferry.toml"], "pods": pod_facts(docs),
                                  "inbound_config": data.get("inbound.toml"), "inbound": check_inbound(docs, values),
                                  "hpa_metrics": hpa_metrics, "service_monitor": "ServiceMonitor" in kinds}
        if "ScaledObject" in kinds:
            summary["cases"][name]["keda"] = keda_table(docs)
        if name == "default":
            plain = manifest(rendered)
            target = pathlib.Path(args.k8s) / "ferry.yaml"
            header = ("# Rendered from helm/ferry with its default values and proxyProtocol.balancer \"none\"\n"
                      "# (release \"ferry\", namespace \"mail\") by `make k8s`; tests/chart.rs keeps it\n"
                      "# identical. Edit the chart, not this.\n")
            if args.write_k8s:
                target.write_text(header + plain)
            check(target.read_text() == header + plain, f"{target} is not the default rendering: run `make k8s`")
            lint_yaml((pathlib.Path(args.k8s) / "kustomization.yaml").read_text(), "k8s/kustomization.yaml")
    summary["balancers"] = check_balancers(chart)
    summary["inbound"] = inbound_rendering(chart)
    summary["knobs"] = check_knobs(chart)
    summary["crd_typos"] = check_typos(crd_docs)
    summary["render_refused"] = []
    for values, word in BAD_RENDERS:
        if values and "proxyProtocol" not in values:
            values = {**BALANCER_NONE, **values}
        error = render_fails(chart, values)
        check(error is not None, f"{values} rendered")
        check(word in error, f"{values}: refused without naming {word}: {error}")
        summary["render_refused"].append(error[:240])
    with tempfile.TemporaryDirectory() as out:
        archive = helm.package(str(chart_dir), destination=out)
        summary["package"] = {"file": pathlib.Path(archive).name, "digest": helm.digest(archive),
                              "version": chart.version}
        check(helm.Chart.load_archive(pathlib.Path(archive).read_bytes()).render(
            BALANCER_NONE, name="ferry", namespace="mail", is_install=True), "the packaged chart renders")
    refused = []
    for values, word in BAD_VALUES:
        try:
            chart.validate_schema(values)
        except helm.HelmValuesError as e:
            check(word in str(e), f"{values}: refused without naming {word}: {e}")
            refused.append(" ".join(str(e).split())[:200])
            continue
        raise AssertionError(f"{values} was accepted")
    summary["refused"] = refused
    summary["kubernetes"] = KUBERNETES
    print(json.dumps(summary))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}")
        sys.exit(1)
