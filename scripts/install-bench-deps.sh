#!/usr/bin/env bash
# Installs what `make bench` needs: Postfix (and its smtp-sink), Cyrus SASL
# tools and OpenDKIM for the side-by-side peer, and redis-server for cluster
# mode. Services are not started: the bench runs its own instances in
# temporary directories.
set -euo pipefail
need=()
[ -x /usr/sbin/postfix ] || need+=(postfix)
[ -x /usr/sbin/saslpasswd2 ] || need+=(sasl2-bin libsasl2-modules)
[ -x /usr/sbin/opendkim ] || need+=(opendkim opendkim-tools)
command -v openssl >/dev/null || need+=(openssl)
command -v redis-server >/dev/null || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing ${need[*]}: run as root or install them" >&2
        exit 1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
