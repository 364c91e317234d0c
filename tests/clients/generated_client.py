#!/usr/bin/env python3
"""Drives Ferry's admin API through a client that openapi-python-client
generated from the relay's own OpenAPI document (tests/api_client.rs
generates it and puts it on PYTHONPATH as `ferry_client`). Nothing here
speaks HTTP itself: every call is a generated `api/<tag>/<operation>.py`
function's `sync_detailed` on the generated `AuthenticatedClient`.

Two steps, each printing a JSON summary on stdout:

  onboard URL TOKEN WEBHOOK_URL WEBHOOK_SECRET
      creates a tenant and an application (its password shown once),
      registers the application's webhook, adds a suppression and lists
      the tenant's suppressions.
  events URL TOKEN
      reads the application's events a page of one at a time, following
      `next` until a page comes back empty, then removes the suppression
      and lists the suppressions again.
"""
import json
import sys

from ferry_client import AuthenticatedClient
from ferry_client.api.applications import create_application
from ferry_client.api.events import list_events, set_application_webhook
from ferry_client.api.suppressions import add_suppression, list_suppressions, remove_suppression
from ferry_client.api.tenants import create_tenant
from ferry_client.models import AppBody, EventPage, SuppressionBody, TenantBody, WebhookBody, WebhookCreated

TENANT = "initech"
DOMAIN = "initech.test"
APP = "initech-mailer"
SENDER = "mailer@initech.test"
SUPPRESSED = "blocked@dest.test"


def client(url: str, token: str) -> AuthenticatedClient:
    # An undocumented status raises instead of parsing to None.
    return AuthenticatedClient(base_url=url, token=token, raise_on_unexpected_status=True, timeout=20.0)


def entries(parsed) -> list:
    """A list of free-form generated models as plain dicts."""
    return [item.to_dict() for item in parsed] if isinstance(parsed, list) else []


def onboard(api: AuthenticatedClient, webhook_url: str, webhook_secret: str) -> dict:
    out = {}
    r = create_tenant.sync_detailed(client=api, body=TenantBody(name=TENANT, domains=[DOMAIN]))
    out["create_tenant"] = {"status": int(r.status_code), "body": r.parsed.to_dict()}

    r = create_application.sync_detailed(
        client=api,
        body=AppBody(username=APP, tenant=TENANT, envelope_from=[SENDER], allowed_networks=["127.0.0.0/8"]),
    )
    created = r.parsed.to_dict()
    out["create_application"] = {
        "status": int(r.status_code),
        "username": created.get("username"),
        "tenant": created.get("tenant"),
    }
    # Shown this once: the Rust side signs in with it.
    out["password"] = created.get("password")

    r = set_application_webhook.sync_detailed(
        APP, client=api, body=WebhookBody(url=webhook_url, secret=webhook_secret)
    )
    hook = r.parsed
    out["set_application_webhook"] = {
        "status": int(r.status_code),
        "typed": isinstance(hook, WebhookCreated),
        "url": hook.url if isinstance(hook, WebhookCreated) else None,
        "secret_echoed": isinstance(hook, WebhookCreated) and hook.secret == webhook_secret,
    }

    r = add_suppression.sync_detailed(
        client=api, body=SuppressionBody(tenant=TENANT, recipient=SUPPRESSED, note="generated client")
    )
    out["add_suppression"] = {"status": int(r.status_code), "body": r.parsed.to_dict()}

    r = list_suppressions.sync_detailed(client=api, tenant=TENANT)
    out["list_suppressions"] = {"status": int(r.status_code), "entries": entries(r.parsed)}
    return out


def events(api: AuthenticatedClient) -> dict:
    statuses, seen, pages = [], [], 0
    after = None
    while pages < 50:
        kwargs = {"app": APP, "limit": 1}
        if after is not None:
            kwargs["after"] = after
        r = list_events.sync_detailed(client=api, **kwargs)
        statuses.append(int(r.status_code))
        page = r.parsed
        if not isinstance(page, EventPage):
            break
        pages += 1
        seen.extend(item.to_dict() for item in page.events)
        if not page.events or not isinstance(page.next_, str):
            break
        after = page.next_
    out = {"list_events": {"statuses": statuses, "pages": pages, "events": seen, "last_next": after}}

    r = remove_suppression.sync_detailed(TENANT, SUPPRESSED, client=api)
    out["remove_suppression"] = {"status": int(r.status_code)}
    r = list_suppressions.sync_detailed(client=api, tenant=TENANT)
    out["list_suppressions_after"] = {"status": int(r.status_code), "entries": entries(r.parsed)}
    return out


def main() -> int:
    step, url, token = sys.argv[1:4]
    with client(url, token) as api:
        if step == "onboard":
            summary = onboard(api, sys.argv[4], sys.argv[5])
        elif step == "events":
            summary = events(api)
        else:
            print(f"unknown step {step!r}", file=sys.stderr)
            return 2
    json.dump(summary, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
