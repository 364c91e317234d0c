#!/usr/bin/env bash
# `make run`: onboard a demo tenant and application (a fresh password each
# time), print how to send a first message, then run the relay.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FERRY_BIN:-target/release/ferry}
export FERRY_CONFIG=${FERRY_CONFIG:-dev/ferry.toml}

"$bin" check-config >/dev/null
"$bin" tenant show demo >/dev/null 2>&1 ||
    "$bin" tenant add demo --domain demo.example --contact platform@demo.example >/dev/null
if "$bin" app show demo-app >/dev/null 2>&1; then
    out=$("$bin" app rotate-password demo-app)
else
    out=$("$bin" app add demo-app --tenant demo --from app@demo.example \
        --allow 127.0.0.0/8 --allow ::1/128)
fi
password=$(printf '%s\n' "$out" | sed -n 's/^password: //p')
# Sign the demo's mail too (the key stays in var/; nothing publishes it).
"$bin" dkim list | grep -q '_domainkey.demo.example' ||
    "$bin" dkim generate demo.example --selector demo --algorithm ed25519 >/dev/null
port=$("$bin" check-config 2>/dev/null | sed -n 's/^submission = "[^"]*:\([0-9]*\)"$/\1/p')
admin=$("$bin" check-config 2>/dev/null | sed -n '/^\[admin\]/,/^\[/s/^listen = "\(.*\)"$/\1/p')
# A fresh admin token each start; the previous demo token is revoked.
for id in $("$bin" token list | awk -F'\t' '$5 == "make run demo" && $4 == "active" {print $1}'); do
    "$bin" token revoke "$id" >/dev/null
done
token=$("$bin" token add --name "make run demo" --role admin | sed -n 's/^token: //p')

cat <<MSG

  Ferry is starting with a demo tenant "demo" and application "demo-app".
  Send a first message (STARTTLS + AUTH on the submission port):

    swaks --server 127.0.0.1:${port:-2587} --tls --auth PLAIN \\
          --auth-user demo-app --auth-password '$password' \\
          --from app@demo.example --to someone@example.net

  Captured mail lands in var/capture/ (one .eml and one .json per message).
  The admin API answers on http://${admin:-127.0.0.1:8025}/v1 with an admin token:

    curl -s -H 'Authorization: Bearer $token' http://${admin:-127.0.0.1:8025}/v1/apps

  The dashboard (usage, forecast and charge-back per tenant) signs in with
  the same token, kept in the browser tab only:

    http://${admin:-127.0.0.1:8025}/dashboard#token=$token

  In another terminal, see the message counted for the demo tenant (the
  CLI asks the running relay; it works the same once it is stopped):

    $bin --config $FERRY_CONFIG report usage --format csv

MSG
exec "$bin" serve
