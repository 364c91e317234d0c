#!/usr/bin/env python3
"""Validates the chart's custom-resource objects against the published CRD
schemas, as the Kubernetes API server would with strict field validation.

The schemas are the `openAPIV3Schema` of each CRD version, kept in crds/
beside this file (crds/README.md names each one's repository, file, release
and commit; only the descriptions are taken out). Kinds known:

    keda.sh/v1alpha1          ScaledObject     (KEDA 2.x)
    monitoring.coreos.com/v1  ServiceMonitor   (prometheus-operator)
    monitoring.coreos.com/v1  PrometheusRule   (prometheus-operator)
    cert-manager.io/v1        Certificate      (cert-manager)

On top of each schema, as the API server does:
- unknown fields are refused: every `type: object` schema without
  `additionalProperties` or `x-kubernetes-preserve-unknown-fields` gets
  `additionalProperties: false` (what pruning and strict field validation do);
- `x-kubernetes-int-or-string`, `nullable`, `x-kubernetes-list-type` (set
  and map uniqueness) and the schemas' CEL rules (`x-kubernetes-validations`,
  each implemented below; an unknown rule fails loudly) are honoured;
- metadata is ObjectMeta: a DNS-1123 name, string maps of labels and
  annotations with valid keys, no unknown fields.

And what the schemas leave to the operators (documented in EXTRA below):
KEDA's scaler type names and the prometheus scaler's metadata keys, the HPA
behavior rules KEDA passes on to the HPA, prometheus-operator's "alert or
record" rule, and cert-manager's webhook checks on identities, key sizes and
issuer kinds.

    import crds
    crds.validate(doc)  # True: a known kind, valid; False: not a kind known
                        # here; AssertionError naming the field path: invalid

`python crds.py --self-test` shows valid examples pass and misspellings fail.
`python crds.py --import CRD.yaml --repository R --path P --ref TAG --commit C`
writes crds/<group>_<plural>.<version>.yaml from a published CRD file.
"""
import argparse
import copy
import functools
import pathlib
import re
import sys

import jsonschema
import yaml

DATA = pathlib.Path(__file__).resolve().parent / "crds"

# KEDA 2.x trigger types: the cases of buildScaler in kedacore/keda
# pkg/scaling/scalers_builder.go at v2.20.2 (less the test-only
# "external-mock"). The CRD leaves `type` a free string; KEDA refuses
# others at run time.
KEDA_SCALERS = (
    "activemq", "apache-kafka", "arangodb", "artemis-queue", "aws-cloudwatch", "aws-dynamodb",
    "aws-dynamodb-streams", "aws-kinesis-stream", "aws-sqs-queue", "azure-app-insights", "azure-blob",
    "azure-data-explorer", "azure-eventhub", "azure-log-analytics", "azure-monitor", "azure-pipelines",
    "azure-queue", "azure-servicebus", "beanstalkd", "cassandra", "couchdb", "cpu", "cron", "datadog",
    "dynatrace", "elastic-forecast", "elasticsearch", "etcd", "external", "external-push", "forgejo-runner",
    "gcp-cloudtasks", "gcp-pubsub", "gcp-stackdriver", "gcp-storage", "github-runner", "graphite",
    "huawei-cloudeye", "ibmmq", "influxdb", "kafka", "kubernetes-resource", "kubernetes-workload", "liiklus",
    "loki", "memory", "metrics-api", "mongodb", "mssql", "mysql", "nats-jetstream", "new-relic", "nsq",
    "opensearch", "openstack-metric", "openstack-swift", "postgresql", "predictkube", "prometheus", "pulsar",
    "rabbitmq", "redis", "redis-cluster", "redis-cluster-streams", "redis-sentinel", "redis-sentinel-streams",
    "redis-streams", "selenium-grid", "solace-direct-messaging", "solace-event-queue", "solarwinds", "solr",
    "splunk", "splunk-observability", "sumologic", "temporal",
)

# The prometheus scaler's trigger metadata: the `order=triggerMetadata` keys
# of prometheusMetadata (pkg/scalers/prometheus_scaler.go) and of the
# authentication.Config it embeds (pkg/scalers/authentication/
# authentication_types.go), KEDA v2.20.2. Values are parsed as Go does:
# floats as JSON numbers, booleans by strconv.ParseBool, durations as Go
# durations or milliseconds.
_FLOAT = {"type": "string", "pattern": r"^\s*-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$",
          "x-message": "must be a number"}
_BOOL = {"type": "string", "enum": ["1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"],
         "x-message": "must be a boolean (true or false)"}
_DURATION = {"type": "string", "pattern": r"^\s*([0-9]+|([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+)\s*$",
             "x-message": "must be a Go duration (30s) or milliseconds"}
PROMETHEUS_METADATA = {
    "type": "object",
    "required": ["serverAddress", "query", "threshold"],
    "properties": {
        "serverAddress": {}, "query": {}, "queryParameters": {}, "threshold": _FLOAT,
        "activationThreshold": _FLOAT, "namespace": {}, "customHeaders": {}, "ignoreNullValues": _BOOL,
        "unsafeSsl": _BOOL, "awsRegion": {}, "timeout": _DURATION, "identityOwner": {},
        "authModes": {}, "authMode": {}, "apiKey": {}, "method": {"enum": ["header", "query"]},
        "keyParamName": {},
    },
    "additionalProperties": False,
}

# HPAScalingRules as the HPA that KEDA makes validates them (kubernetes
# pkg/apis/autoscaling/validation/validation.go: validateScalingRules).
_HPA_RULES = {
    "properties": {
        "stabilizationWindowSeconds": {"minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {"items": {"properties": {
            "type": {"enum": ["Pods", "Percent"]},
            "value": {"minimum": 1},
            "periodSeconds": {"minimum": 1, "maximum": 1800},
        }}},
    }
}

_CERT_IDENTITIES = ["commonName", "dnsNames", "uris", "emailAddresses", "ipAddresses", "otherNames"]

# Checks beyond each CRD's schema, per kind, as JSON Schema (draft 7) over
# the whole object; `x-message` replaces jsonschema's wording.
EXTRA = {
    ("keda.sh/v1alpha1", "ScaledObject"): {"properties": {"spec": {"properties": {
        "triggers": {"items": {
            "properties": {
                "type": {"enum": list(KEDA_SCALERS), "x-message": "not a KEDA 2.x scaler type (KEDA_SCALERS in crds.py)"},
                # HPA metric target types (KEDA docs: trigger metricType).
                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
            },
            "allOf": [{
                "if": {"required": ["type"], "properties": {"type": {"const": "prometheus"}}},
                "then": {"properties": {"metadata": PROMETHEUS_METADATA}},
            }],
        }},
        "advanced": {"properties": {"horizontalPodAutoscalerConfig": {"properties": {"behavior": {"properties": {
            "scaleUp": _HPA_RULES, "scaleDown": _HPA_RULES}}}}}},
    }}}},
    # prometheus-operator's admission webhook parses rules with Prometheus's
    # own rule parser: each rule is an alert or a recording rule, not both.
    ("monitoring.coreos.com/v1", "PrometheusRule"): {"properties": {"spec": {"properties": {"groups": {"items": {
        "properties": {"rules": {"items": {
            "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
            "x-message": "a rule has exactly one of alert or record",
        }}}}}}}}},
    # cert-manager's webhook (internal/apis/certmanager/validation/
    # certificate.go, v1.21.1).
    ("cert-manager.io/v1", "Certificate"): {"properties": {"spec": {
        "anyOf": [{"required": [k]} for k in _CERT_IDENTITIES],
        "x-message": "at least one of " + ", ".join(_CERT_IDENTITIES) + " must be set",
        "properties": {
            "privateKey": {
                "if": {"required": ["algorithm"], "properties": {"algorithm": {"const": "ECDSA"}}},
                "then": {"properties": {"size": {"enum": [0, 256, 384, 521]}}},
            },
            "issuerRef": {
                "if": {"anyOf": [{"not": {"required": ["group"]}},
                                 {"properties": {"group": {"enum": ["", "cert-manager.io"]}}}]},
                "then": {"properties": {"kind": {"enum": ["", "Issuer", "ClusterIssuer"]}}},
            },
        },
    }}},
}

# ObjectMeta as the API server validates it for custom resources
# (apimachinery ValidateObjectMeta with NameIsDNSSubdomain; label and
# annotation keys are qualified names, label values at most 63 characters).
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_QUALIFIED_NAME = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                   r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": _DNS_SUBDOMAIN},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {
            "type": "object",
            "propertyNames": {"pattern": _QUALIFIED_NAME, "x-message": "not a valid label key"},
            "additionalProperties": {"type": "string", "maxLength": 63,
                                     "pattern": r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"},
        },
        "annotations": {
            "type": "object",
            "propertyNames": {"pattern": _QUALIFIED_NAME.replace("a-z0-9", "A-Za-z0-9"),
                              "x-message": "not a valid annotation key"},
            "additionalProperties": {"type": "string"},
        },
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "uid": {"type": "string"}, "resourceVersion": {"type": "string"}, "generation": {"type": "integer"},
        "creationTimestamp": {}, "deletionTimestamp": {}, "deletionGracePeriodSeconds": {"type": "integer"},
        "selfLink": {"type": "string"}, "managedFields": {"type": "array"},
    },
    "additionalProperties": False,
}

# The CEL rules (x-kubernetes-validations) of the schemas, by rule text.
CEL_RULES = {
    # KEDA ScaledObject spec.
    "!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)":
        lambda s: "minReplicaCount" not in s or s["minReplicaCount"] <= s.get("maxReplicaCount", 100),
}


def _pattern(p):
    """Go RE2 patterns as Python's re reads them: RE2 takes flags mid-way."""
    if p.startswith("^(?i)"):
        p = "(?i)^" + p[len("^(?i)"):]
    if "(?" in p[1:] and not p.startswith("(?"):
        raise ValueError(f"crds.py cannot translate the RE2 pattern {p!r}")
    return p


def _structural(node):
    """A CRD schema node made strict, as the API server applies it."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "properties":
            out[k] = {name: _structural(s) for name, s in v.items()}
        elif k in ("items", "additionalProperties", "not"):
            out[k] = _structural(v)
        elif k in ("anyOf", "allOf", "oneOf"):
            out[k] = [_structural(s) for s in v]
        elif k == "pattern":
            out[k] = _pattern(v)
        elif k in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(v, bool):
            if v:  # OpenAPI 3.0's boolean form, as draft 7 has it
                out[k] = node["minimum" if k == "exclusiveMinimum" else "maximum"]
        else:
            out[k] = v
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (out.get("type") == "object" and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if out.pop("nullable", False):
        out = {"anyOf": [{"type": "null"}, out]}
    return out


def _list_type(validator, list_type, instance, schema):
    if not validator.is_type(instance, "array"):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen = {}
    for i, item in enumerate(instance):
        if list_type == "set":
            key = repr(item)
            what = f"duplicate entry {item!r}"
        elif list_type == "map" and isinstance(item, dict):
            key = repr([item.get(k) for k in keys])
            what = "duplicate entry with " + ", ".join(f"{k}={item.get(k)!r}" for k in keys)
        else:
            continue
        if key in seen:
            yield jsonschema.ValidationError(what, path=[i])
        seen[key] = i


def _cel(validator, rules, instance, schema):
    for r in rules:
        check = CEL_RULES.get(r["rule"])
        if check is None:
            yield jsonschema.ValidationError(f"crds.py does not implement the CEL rule {r['rule']!r}: add it to CEL_RULES")
            continue
        try:
            ok = check(instance)
        except (TypeError, AttributeError):
            ok = True  # the schema's own type checks report it
        if not ok:
            yield jsonschema.ValidationError(r.get("message") or f"fails {r['rule']}")


Validator = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    {"x-kubernetes-list-type": _list_type, "x-kubernetes-validations": _cel},
)


@functools.cache
def schemas():
    """{(apiVersion, kind): (source, validators)} from crds/*.yaml."""
    out = {}
    for f in sorted(DATA.glob("*.yaml")):
        d = yaml.safe_load(f.read_text())
        key = (d["apiVersion"], d["kind"])
        root = copy.deepcopy(d["openAPIV3Schema"])
        root.setdefault("properties", {})["metadata"] = OBJECT_META
        root["required"] = sorted(set(root.get("required", [])) | {"metadata", "spec"})
        checks = [Validator(_structural(root))]
        if key in EXTRA:
            checks.append(Validator(EXTRA[key]))
        for v in checks:
            Validator.check_schema(v.schema)
        out[key] = (f"{f.name} ({d['source']['repository']} {d['source']['ref']})", checks)
    return out


def _path(parts):
    s = ""
    for p in parts:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s or "(object)"


def _explain(e):
    """(field path, message) lines for one jsonschema error."""
    path = list(e.absolute_path)
    if e.validator == "additionalProperties" and e.validator_value is False and isinstance(e.instance, dict):
        known = e.schema.get("properties", {})
        return [(_path(path + [k]), "unknown field") for k in e.instance if k not in known]
    if e.validator == "required":
        m = re.match(r"^'(.*)' is a required property$", e.message)
        if m:
            return [(_path(path + [m.group(1)]), "required field missing")]
    if e.validator == "propertyNames":
        return [(_path(path + [e.instance]), e.schema.get("x-message", e.message))]
    if "x-message" in e.schema:
        return [(_path(path), f"{e.instance!r}: {e.schema['x-message']}"
                 if not isinstance(e.instance, (dict, list)) else e.schema["x-message"])]
    if e.validator == "anyOf" and e.schema.get("x-kubernetes-int-or-string"):
        return [(_path(path), f"{e.instance!r}: must be an integer or a string")]
    if e.validator == "enum" and len(e.validator_value) > 8:
        return [(_path(path), f"{e.instance!r} is not one of the {len(e.validator_value)} allowed values")]
    return [(_path(path), e.message)]


def validate(doc):
    """True if doc is a known CRD kind and valid, False if not a known kind;
    raises AssertionError naming each failing field path otherwise."""
    if not isinstance(doc, dict):
        return False
    known = schemas().get((doc.get("apiVersion"), doc.get("kind")))
    if known is None:
        return False
    source, checks = known
    problems = []
    for v in checks:
        for e in v.iter_errors(doc):
            problems.extend(_explain(e))
    if problems:
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
        lines = sorted(set(f"  {p}: {m}" for p, m in problems))
        raise AssertionError(f"{doc['kind']} {name or '?'} ({doc['apiVersion']}) does not fit its CRD, "
                             f"{source}:\n" + "\n".join(lines))
    return True


# --- importing a published CRD ----------------------------------------------

def _strip_descriptions(node):
    if isinstance(node, list):
        return [_strip_descriptions(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "description" and isinstance(v, str):
            continue
        out[k] = ({n: _strip_descriptions(s) for n, s in v.items()} if k == "properties"
                  else _strip_descriptions(v))
    return out


def import_crd(crd_file, source):
    """Writes crds/<group>_<plural>.<version>.yaml for each served version."""
    written = []
    for crd in yaml.safe_load_all(pathlib.Path(crd_file).read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            api_version = f"{spec['group']}/{version['name']}"
            out = DATA / f"{spec['group']}_{spec['names']['plural']}.{version['name']}.yaml"
            header = (
                f"# {spec['names']['kind']} ({api_version}): the openAPIV3Schema of the published CRD\n"
                f"# {crd['metadata']['name']}, version {version['name']}, descriptions removed, otherwise as published.\n"
                f"# Source: github.com/{source['repository']}, {source['path']}, release {source['ref']}"
                f" (commit {source['commit']}).\n"
                f"# Written by tests/clients/crds.py --import; do not edit by hand.\n"
            )
            body = {"apiVersion": api_version, "kind": spec["names"]["kind"], "source": source,
                    "openAPIV3Schema": _strip_descriptions(version["schema"]["openAPIV3Schema"])}
            out.write_text(header + yaml.safe_dump(body, sort_keys=False, width=1000, allow_unicode=True))
            written.append(out)
    return written


# --- self-test ----------------------------------------------------------------

_LABELS = {
    "helm.sh/chart": "ferry-0.1.0", "app.kubernetes.io/name": "ferry", "app.kubernetes.io/instance": "ferry",
    "app.kubernetes.io/version": "0.1.0", "app.kubernetes.io/managed-by": "Helm",
}


def examples():
    """Hand renderings of helm/ferry/templates/{scaledobject,servicemonitor,
    prometheusrule,certificate}.yaml, with the fields the chart is adding
    (ScaledObject fallback, ignoreNullValues, HPA behavior; runbook_url)."""
    ns = "mail"
    trigger = lambda name, metric, threshold: {  # noqa: E731
        "type": "prometheus", "name": name,
        "metadata": {"serverAddress": "http://prometheus-operated.monitoring:9090",
                     "query": f'max({metric}{{namespace="{ns}"}})', "threshold": threshold,
                     "ignoreNullValues": "false"}}
    scaled = {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "ferry-delivery", "labels": dict(_LABELS)},
        "spec": {
            "scaleTargetRef": {"name": "ferry-delivery"},
            "minReplicaCount": 1, "maxReplicaCount": 10, "pollingInterval": 15, "cooldownPeriod": 300,
            "fallback": {"failureThreshold": 3, "replicas": 2},
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                "scaleDown": {"stabilizationWindowSeconds": 600,
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]},
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 60}]}}}},
            "triggers": [trigger("due-messages", "ferry_queue_due_messages", "100"),
                         trigger("oldest-due", "ferry_queue_oldest_due_seconds", "60")],
        },
    }
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "ferry", "labels": dict(_LABELS, release="prometheus")},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/instance": "ferry", "app.kubernetes.io/component": "admin"}},
            "endpoints": [{"port": "admin", "path": "/metrics", "interval": "30s"}],
        },
    }
    alert = lambda name, expr, severity, **extra: dict(  # noqa: E731
        {"alert": name, "expr": expr, "labels": {"severity": severity},
         "annotations": {"summary": f"{name} fired", "description": "See the runbook.",
                         "runbook_url": f"https://ferry.example.org/runbook#{name.lower()}"}}, **extra)
    rule = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "ferry", "labels": dict(_LABELS)},
        "spec": {"groups": [{"name": "ferry", "rules": [
            alert("FerryChargebackThresholdCrossed",
                  f'sum by (kind, scope) (increase(ferry_alerts_total{{namespace="{ns}"}}[15m])) > 0', "info"),
            alert("FerryQueueStuck", f'max(ferry_queue_oldest_due_seconds{{namespace="{ns}"}}) > 900', "warning",
                  **{"for": "10m"}),
            alert("FerryDeliveryFailureRate",
                  f'sum(rate(ferry_delivery_attempts_total{{namespace="{ns}",result=~"failed|deferred"}}[15m]))\n'
                  f'  / sum(rate(ferry_delivery_attempts_total{{namespace="{ns}"}}[15m])) > 0.2\n', "warning",
                  **{"for": "15m"}),
            alert("FerryScannerDown", f'sum by (scanner) (increase(ferry_scanner_failures_total{{namespace="{ns}"}}[10m])) > 0',
                  "critical", **{"for": "5m"}),
            alert("FerryRedisUnreachable", f'min(ferry_store_up{{namespace="{ns}"}}) == 0', "critical", **{"for": "2m"}),
        ]}]},
    }
    cert = {
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "ferry", "labels": dict(_LABELS)},
        "spec": {
            "secretName": "ferry-tls", "dnsNames": ["mx.example.org"],
            "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"},
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        },
    }
    return {"ScaledObject": scaled, "ServiceMonitor": monitor, "PrometheusRule": rule, "Certificate": cert}


def _rename(d, key, new):
    d[new] = d.pop(key)


def mutations():
    """(description, kind, change, field path the refusal must name)."""
    def so(f):
        return ("ScaledObject", f)
    t0 = lambda d: d["spec"]["triggers"][0]  # noqa: E731
    r0 = lambda d: d["spec"]["groups"][0]["rules"][0]  # noqa: E731
    return [
        ("ScaledObject cooldownPerod", *so(lambda d: _rename(d["spec"], "cooldownPeriod", "cooldownPerod")),
         "spec.cooldownPerod"),
        ("ScaledObject trigger type prometeus", *so(lambda d: t0(d).update(type="prometeus")), "spec.triggers[0].type"),
        ("ScaledObject metadata treshold", *so(lambda d: _rename(t0(d)["metadata"], "threshold", "treshold")),
         "spec.triggers[0].metadata.treshold"),
        ("ScaledObject ignoreNullValues nope", *so(lambda d: t0(d)["metadata"].update(ignoreNullValues="nope")),
         "spec.triggers[0].metadata.ignoreNullValues"),
        ("ScaledObject threshold not a number", *so(lambda d: t0(d)["metadata"].update(threshold="ten")),
         "spec.triggers[0].metadata.threshold"),
        ("ScaledObject metadata value not a string", *so(lambda d: t0(d)["metadata"].update(threshold=100)),
         "spec.triggers[0].metadata.threshold"),
        ("ScaledObject fallback without replicas", *so(lambda d: d["spec"]["fallback"].pop("replicas")),
         "spec.fallback.replicas"),
        ("ScaledObject fallback failureTreshold",
         *so(lambda d: _rename(d["spec"]["fallback"], "failureThreshold", "failureTreshold")),
         "spec.fallback.failureTreshold"),
        ("ScaledObject behavior policy type Pod", *so(lambda d: d["spec"]["advanced"]["horizontalPodAutoscalerConfig"]
                                                     ["behavior"]["scaleDown"]["policies"][0].update(type="Pod")),
         "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.policies[0].type"),
        ("ScaledObject horizontalPodAutoscalerConfig.behaviour",
         *so(lambda d: _rename(d["spec"]["advanced"]["horizontalPodAutoscalerConfig"], "behavior", "behaviour")),
         "spec.advanced.horizontalPodAutoscalerConfig.behaviour"),
        ("ScaledObject minReplicaCount > maxReplicaCount (CEL)", *so(lambda d: d["spec"].update(minReplicaCount=20)),
         "spec"),
        ("ScaledObject cooldownPeriod a string", *so(lambda d: d["spec"].update(cooldownPeriod="300")),
         "spec.cooldownPeriod"),
        ("ScaledObject without metadata.name", *so(lambda d: d["metadata"].pop("name")), "metadata.name"),
        ("ScaledObject label value not a string", *so(lambda d: d["metadata"]["labels"].update(replicas=3)),
         "metadata.labels.replicas"),
        ("ScaledObject annotation value not a string",
         *so(lambda d: d["metadata"].update(annotations={"ferry/checksum": True})), "metadata.annotations.ferry/checksum"),
        ("ScaledObject metadata.lables", *so(lambda d: _rename(d["metadata"], "labels", "lables")), "metadata.lables"),
        ("ServiceMonitor endpoint intervall", "ServiceMonitor",
         lambda d: _rename(d["spec"]["endpoints"][0], "interval", "intervall"), "spec.endpoints[0].intervall"),
        ("ServiceMonitor interval 30 seconds", "ServiceMonitor",
         lambda d: d["spec"]["endpoints"][0].update(interval="30 seconds"), "spec.endpoints[0].interval"),
        ("ServiceMonitor selector.matchLabel", "ServiceMonitor",
         lambda d: _rename(d["spec"]["selector"], "matchLabels", "matchLabel"), "spec.selector.matchLabel"),
        ("PrometheusRule rule expresion", "PrometheusRule", lambda d: _rename(r0(d), "expr", "expresion"),
         "spec.groups[0].rules[0].expresion"),
        ("PrometheusRule rule with alert and record", "PrometheusRule", lambda d: r0(d).update(record="ferry:x"),
         "spec.groups[0].rules[0]"),
        ("PrometheusRule for 10 minutes", "PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][1].update(
            {"for": "10 minutes"}), "spec.groups[0].rules[1].for"),
        ("PrometheusRule two groups named ferry", "PrometheusRule",
         lambda d: d["spec"]["groups"].append(copy.deepcopy(d["spec"]["groups"][0])), "spec.groups[1]"),
        ("Certificate dnsName", "Certificate", lambda d: _rename(d["spec"], "dnsNames", "dnsName"), "spec.dnsName"),
        ("Certificate ECDSA size 2048", "Certificate", lambda d: d["spec"]["privateKey"].update(size=2048),
         "spec.privateKey.size"),
        ("Certificate rotationPolicy always", "Certificate",
         lambda d: d["spec"]["privateKey"].update(rotationPolicy="always"), "spec.privateKey.rotationPolicy"),
        ("Certificate issuerRef kind Issuers", "Certificate", lambda d: d["spec"]["issuerRef"].update(kind="Issuers"),
         "spec.issuerRef.kind"),
    ]


def self_test():
    passed = failed = 0

    def result(ok, text):
        nonlocal passed, failed
        passed += ok
        failed += not ok
        print(("ok   " if ok else "FAIL ") + text)

    for source, _ in schemas().values():
        print(f"schema {source}")
    ex = examples()
    for kind, doc in ex.items():
        try:
            result(validate(copy.deepcopy(doc)) is True, f"valid {kind} accepted")
        except AssertionError as e:
            result(False, f"valid {kind} refused: {e}")
    so = ex["ScaledObject"]["spec"]
    result("fallback" in so and so["triggers"][0]["metadata"]["ignoreNullValues"] == "false"
           and "behavior" in so["advanced"]["horizontalPodAutoscalerConfig"]
           and all("runbook_url" in r["annotations"] for r in ex["PrometheusRule"]["spec"]["groups"][0]["rules"]),
           "valid examples hold fallback, ignoreNullValues, HPA behavior and runbook_url")
    result(validate({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}) is False,
           "a Deployment is not a CRD kind known here (False)")
    result(validate({"apiVersion": "keda.sh/v1alpha2", "kind": "ScaledObject"}) is False,
           "an unknown apiVersion is not known here (False)")
    for what, kind, change, path in mutations():
        doc = copy.deepcopy(ex[kind])
        change(doc)
        try:
            validate(doc)
            result(False, f"{what}: accepted")
        except AssertionError as e:
            lines = [line.strip() for line in str(e).splitlines()[1:]]
            hit = [line for line in lines if line.startswith(path + ":")]
            result(bool(hit), f"{what}: refused, {hit[0] if hit else lines}")
    print(f"{passed} passed, {failed} failed")
    return failed == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("--import", dest="crd_file", metavar="CRD.yaml")
    parser.add_argument("--repository")
    parser.add_argument("--path")
    parser.add_argument("--ref")
    parser.add_argument("--commit")
    parser.add_argument("files", nargs="*", help="manifests whose CRD objects to validate")
    args = parser.parse_args()
    if args.crd_file:
        source = {"repository": args.repository, "path": args.path, "ref": args.ref, "commit": args.commit}
        if not all(source.values()):
            parser.error("--import needs --repository, --path, --ref and --commit")
        for f in import_crd(args.crd_file, source):
            print(f"wrote {f}")
        return 0
    if args.self_test:
        return 0 if self_test() else 1
    status = 0
    for f in args.files:
        for doc in yaml.safe_load_all(pathlib.Path(f).read_text()):
            try:
                if validate(doc):
                    print(f"ok {f}: {doc['kind']} {doc['metadata']['name']}")
            except AssertionError as e:
                print(f"{f}: {e}", file=sys.stderr)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
