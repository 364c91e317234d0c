#!/usr/bin/env python3
"""Drives Ferry's dashboard in headless Chromium (Debian's /usr/bin/chromium)
with Playwright, and checks it against the admin API read directly:

- finance, signed in by the link `make run` prints (#token=): every tenant's
  used, forecast, peak and charge-back cells carry the API's overview values
  and show them formatted for people (en-US: 1,100 and €200.00); the
  per-application table is the outcome report's; the chart marks the
  contracted peak and the year's peak hour;
- the CSV and FOCUS downloads are the API's report for the same period,
  byte for byte (all tenants, then one);
- a tenant-admin signing in with the form (by its label, with the keyboard)
  sees its own tenant only: no organisation row, no other tenant's name;
- every request the page makes goes to the admin listener; no console
  error, no CSP violation.

Prints a JSON summary; any failed check exits non-zero with its reason."""
import argparse
import json
import sys
import urllib.parse
import urllib.request

from playwright.sync_api import sync_playwright


def get(admin, path, token):
    request = urllib.request.Request(admin + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.read()


def check(condition, message):
    if not condition:
        raise AssertionError(message)


class Page:
    """A browser page that records what it asks for and what goes wrong."""

    def __init__(self, browser, admin):
        self.context = browser.new_context(locale="en-US", accept_downloads=True,
                                           viewport={"width": 1366, "height": 900})
        self.page = self.context.new_page()
        self.requests = []
        self.errors = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.admin = admin

    def loaded(self):
        self.shows("#status", "Figures as of")

    def shows(self, selector, text):
        # Locators, not wait_for_function: the page's CSP forbids eval.
        self.page.locator(selector).filter(has_text=text).wait_for(timeout=20000)

    def value(self, selector):
        return self.page.locator(selector).get_attribute("data-value")

    def text(self, selector):
        return self.page.locator(selector).inner_text().strip()


def cells(page, tenant):
    """The data-value and text of each number cell of a tenant's row."""
    row = page.page.locator(f'#tenants tr[data-tenant="{tenant}"]')
    check(row.count() == 1, f"no row for {tenant}")
    tds = row.locator("td.num")
    return [(tds.nth(i).get_attribute("data-value"), tds.nth(i).inner_text().strip()) for i in range(tds.count())]


def money(cents):
    return f"€{cents // 100:,}.{cents % 100:02d}"


def as_finance(browser, args, summary):
    p = Page(browser, args.admin)
    p.page.goto(f"{args.admin}/dashboard#token={args.finance}")
    p.loaded()
    check("#token" not in p.page.url, f"the token stays in the address bar: {p.page.url}")
    api = json.loads(get(args.admin, "/v1/reports/overview", args.finance))
    for t in api["tenants"]:
        # used, allocation, share, forecast, peak, charge
        used, _, _, forecast, peak, crossed, charge = cells(p, t["tenant"])
        check(crossed[0] == str(len(t["thresholds"])), f"{t['tenant']} thresholds {crossed}")
        check(used == (str(t["used"]), f"{t['used']:,}"), f"{t['tenant']} used {used} vs {t['used']}")
        expected_forecast = "" if t["forecast"] is None else str(t["forecast"])
        check(forecast[0] == expected_forecast, f"{t['tenant']} forecast {forecast} vs {t['forecast']}")
        if t["forecast"] is not None:
            check(forecast[1] == f"{t['forecast']:,}", f"forecast text {forecast}")
        peak_units = t["year_peak"]["units"] if t["year_peak"] else 0
        check(peak[0] == str(peak_units), f"{t['tenant']} peak {peak} vs {t['year_peak']}")
        check(charge == (str(t["charge_cents"]), money(t["charge_cents"])),
              f"{t['tenant']} charge {charge} vs {t['charge_cents']}")
        if t["tenant"] == args.tenant:
            summary["acme_charge_text"] = charge[1]
            check(t["used"] >= 1000 and "," in used[1], f"thousands separator: {used}")
            check(len(t["thresholds"]) >= 1, f"acme crossed its allocation: {t}")
    alerts = {a["id"] for scope in [api["organisation"], *api["tenants"]] for a in scope["thresholds"]}
    shown = {p.page.locator("#thresholds tbody tr").nth(i).get_attribute("data-alert")
             for i in range(p.page.locator("#thresholds tbody tr").count())}
    check(shown == alerts, f"thresholds shown {shown} vs {alerts}")
    org = api["organisation"]
    check(p.page.locator("#tenants tr.organisation").count() == 1, "the organisation row")
    check(p.value("#cards .card:nth-child(1) dd") == str(org["used"]), "the organisation card")
    # The chart: the contracted peak's line and the year's peak hour.
    check(p.page.locator("#chart-svg line.limit").count() == 1, "the contracted peak's line")
    check(p.page.locator("#chart-svg rect.bar.peak").count() == 1, "the peak hour's bar")
    check(f"{org['hourly_peak']:,}" in p.text("#chart-caption"), p.text("#chart-caption"))
    # The applications: the outcome report of the same period.
    period = {"from": p.page.input_value("#from"), "to": p.page.input_value("#to")}
    outcomes = json.loads(get(args.admin, "/v1/reports/outcomes?" + urllib.parse.urlencode(period), args.finance))
    for row in outcomes["applications"]:
        tr = p.page.locator(f'#apps tr[data-app="{row["app"]}"] td.num')
        shown = [tr.nth(i).get_attribute("data-value") for i in range(tr.count())]
        keys = ("relayed", "refused_total", "delivered", "deferred", "bounced", "bounced_later", "complained",
                "held", "released", "discarded")
        wanted = [str(row[k]) for k in keys]
        check(shown[:-1] == wanted, f"{row['app']}: {shown} vs {wanted}")
        # The complaint rate: a fraction the page shows as a percentage.
        rate = row["complaint_rate"]
        shown_rate = shown[-1]
        check((rate is None and shown_rate == "") or (rate is not None and float(shown_rate) == rate),
              f"{row['app']}: complaint rate {shown_rate!r} vs {rate!r}")
    summary["apps"] = len(outcomes["applications"])
    # Finance does not see incidents: the section stays hidden.
    check(p.page.locator("#incidents-section").is_hidden(), "no incidents section for finance")
    downloads(p, args, period, None)
    # One tenant chosen: the chart is its own, the download its row only.
    p.page.select_option("#tenant", args.other_tenant)
    p.shows("#chart-caption", f"by {args.other_tenant}")
    downloads(p, args, period, args.other_tenant)
    p.page.select_option("#tenant", "")
    p.shows("#chart-caption", "the organisation")
    p.page.screenshot(path=args.screenshot, full_page=True)
    return p


def downloads(p, args, period, tenant):
    query = dict(period)
    if tenant:
        query["tenant"] = tenant
    for fmt, button in (("csv", "#download-csv"), ("focus", "#download-focus")):
        with p.page.expect_download() as info:
            p.page.click(button)
        with open(info.value.path(), "rb") as f:
            got = f.read()
        want = get(args.admin, "/v1/reports/usage?" + urllib.parse.urlencode({**query, "format": fmt}), args.finance)
        check(got == want, f"{fmt} download ({tenant}) differs from the API:\n{got!r}\n{want!r}")
        check(got.count(b"\r\n") == (2 if tenant else 3), f"{fmt}: a header and the tenants' rows: {got!r}")


def as_tenant_admin(browser, args):
    p = Page(browser, args.admin)
    p.page.goto(f"{args.admin}/dashboard")
    field = p.page.get_by_label("API token")
    field.focus()
    p.page.keyboard.type(args.tenant_admin)
    p.page.keyboard.press("Enter")
    p.loaded()
    body = p.page.locator("body").inner_text()
    check(args.other_tenant not in body, f"a tenant-admin sees {args.other_tenant}")
    check(p.page.locator("#tenants tr.organisation").count() == 0, "no organisation row for a tenant-admin")
    rows = p.page.locator("#tenants tbody tr")
    check(rows.count() == 1 and rows.first.get_attribute("data-tenant") == args.tenant, "its own tenant only")
    options = p.page.locator("#tenant option").all_inner_texts()
    check(options == [args.tenant], f"tenant choices: {options}")
    api = json.loads(get(args.admin, "/v1/reports/overview", args.tenant_admin))
    check([t["tenant"] for t in api["tenants"]] == [args.tenant], f"the API agrees: {api['tenants']}")
    apps = p.page.locator("#apps tbody tr td:first-child").all_inner_texts()
    check(apps and all(a == args.tenant for a in apps), f"applications of its own tenant: {apps}")
    # Its own tenant's incident, opened by hand, and the three messages held under it.
    p.shows("#incidents", "password seen in a paste")
    held = p.page.locator("#held tbody tr[data-held]")
    check(held.count() == 3, f"three held messages: {held.count()}")
    held.first.locator('button[data-action="sample"]').click()
    p.shows("#held-sample", "Subject: held 0")
    held.first.locator('button[data-action="release"]').click()
    p.page.locator("#held tbody tr[data-held]").nth(2).wait_for(state="detached", timeout=20000)
    left = json.loads(get(args.admin, "/v1/held", args.tenant_admin))
    check(len(left) == 2, f"one released, two held: {left}")
    p.page.locator('#incidents button[data-action="discard-all"]').click()
    p.shows("#held", "No held mail")
    check(json.loads(get(args.admin, "/v1/held", args.tenant_admin)) == [], "all discarded")
    # Signing out forgets the token.
    p.page.click("#sign-out")
    check(p.page.evaluate("sessionStorage.length") == 0, "the token is forgotten")
    return p


def main():
    parser = argparse.ArgumentParser()
    for name in ("admin", "finance", "tenant-admin", "tenant", "other-tenant", "screenshot"):
        parser.add_argument("--" + name, required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    summary = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        pages = [as_finance(browser, args, summary), as_tenant_admin(browser, args)]
        browser.close()
    requests = [u for p in pages for u in p.requests]
    own = urllib.parse.urlsplit(args.admin).netloc
    summary["requests"] = len(requests)
    summary["outside_loopback"] = [
        u for u in requests if not u.startswith("blob:") and urllib.parse.urlsplit(u).netloc != own
    ]
    summary["errors"] = [e for p in pages for e in p.errors]
    check(not summary["errors"], f"console errors: {summary['errors']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}")
        sys.exit(1)
