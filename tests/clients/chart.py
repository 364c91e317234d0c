#!/usr/bin/env python3
"""Checks Ferry's Helm chart offline with Helm's own library (helm-python-sdk
binds Helm's Go SDK) and the Kubernetes schemas (kubernetes-validate):

- `helm lint --strict` finds nothing, for the default values and each
  values file in helm/ferry/ci/;
- each renders, and every object passes strict schema validation for two
  Kubernetes versions; the objects of CRDs (KEDA, Prometheus Operator,
  cert-manager) are held to their published CRDs' required fields;
- values that break values.schema.json are refused with a message naming
  the value;
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

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml
from yamllint import config as yamllint_config
from yamllint import linter

KUBERNETES = ["1.30.0", "1.33.0"]

# The fields the published CRDs require (KEDA's keda.sh_scaledobjects,
# prometheus-operator's monitoring.coreos.com_servicemonitors and
# _prometheusrules, cert-manager's cert-manager.io_certificates), and the
# shapes the chart relies on.
_NAMED = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}
CRDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "required": ["scaleTargetRef", "triggers"],
        "properties": {
            "scaleTargetRef": _NAMED,
            "minReplicaCount": {"type": "integer"},
            "maxReplicaCount": {"type": "integer"},
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["type", "metadata"],
                    "properties": {
                        "type": {"type": "string"},
                        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
            },
        },
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "required": ["selector", "endpoints"],
        "properties": {
            "selector": {"type": "object"},
            "endpoints": {"type": "array", "items": {"type": "object", "required": ["port"]}},
        },
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "required": ["groups"],
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "properties": {
                        "rules": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["expr"],
                                "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                "properties": {"expr": {"type": "string", "minLength": 1}},
                            },
                        }
                    },
                },
            }
        },
    },
    ("cert-manager.io/v1", "Certificate"): {
        "required": ["secretName", "issuerRef"],
        "properties": {"secretName": {"type": "string"}, "issuerRef": _NAMED, "dnsNames": {"type": "array"}},
    },
}

# Values that must be refused, and the word the refusal must name.
BAD_VALUES = [
    ({"mode": "multi"}, "mode"),
    ({"drain": {"graceSeconds": 0, "preStopSeconds": 10}}, "graceSeconds"),
    ({"contract": {"currency": "euro"}}, "currency"),
    ({"ingress": {"replicas": "two"}}, "replicas"),
    ({"redis": {"url": "", "existingSecret": ""}}, "redis"),
    ({"servcie": {"type": "LoadBalancer"}}, "servcie"),
    ({"proxyProtocol": {"from": ["everyone"]}}, "from"),
    ({"keda": {"enabled": True}, "mode": "single"}, "mode"),
    ({"alerts": {"webhookUrl": "https://finance.example.org/ferry"}}, "webhookSecret"),
]


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
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRDS:
        schema = {"type": "object", "required": ["metadata", "spec"],
                  "properties": {"spec": dict(CRDS[key], type="object")}}
        jsonschema.validate(doc, schema)
        return ["crd"]
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
            "secret_env": sorted(e["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})),
        }
    return facts


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
    cases = {"default": {}}
    for f in sorted((chart_dir / "ci").glob("*-values.yaml")):
        cases[f.name.removesuffix("-values.yaml")] = yaml.safe_load(f.read_text())
    summary = {"cases": {}}
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
        lint_yaml(manifest(rendered), f"the {name} rendering")
        config = next(d for _, d in docs if d["kind"] == "ConfigMap")["data"]["ferry.toml"]
        summary["cases"][name] = {"kinds": kinds, "config": config, "pods": pod_facts(docs)}
        if name == "default":
            plain = manifest(rendered)
            target = pathlib.Path(args.k8s) / "ferry.yaml"
            header = ("# Rendered from helm/ferry with its default values (release \"ferry\", namespace\n"
                      "# \"mail\") by `make k8s`; tests/chart.rs keeps it identical. Edit the chart, not this.\n")
            if args.write_k8s:
                target.write_text(header + plain)
            check(target.read_text() == header + plain, f"{target} is not the default rendering: run `make k8s`")
            lint_yaml((pathlib.Path(args.k8s) / "kustomization.yaml").read_text(), "k8s/kustomization.yaml")
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
