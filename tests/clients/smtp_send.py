#!/usr/bin/env python3
"""Sends one message with Python's smtplib and prints the outcome as JSON.

Used by the end-to-end tests as a real, independent SMTP client.
"""
import argparse
import json
import smtplib
import ssl
import sys


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["starttls", "implicit"], required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--mechanism", choices=["PLAIN", "LOGIN"], default="PLAIN")
    p.add_argument("--sender", required=True)
    p.add_argument("--rcpt", action="append", required=True)
    p.add_argument("--file", required=True, help="the message, CRLF line endings")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--source", help="the local address to connect from (127.0.0.x)")
    a = p.parse_args()

    ctx = ssl.create_default_context(cafile=a.cafile)
    with open(a.file, "rb") as f:
        content = f.read()
    results = []
    source = (a.source, 0) if a.source else None
    try:
        if a.mode == "implicit":
            s = smtplib.SMTP_SSL(a.host, a.port, context=ctx, timeout=30, source_address=source)
        else:
            s = smtplib.SMTP(a.host, a.port, timeout=30, source_address=source)
            s.starttls(context=ctx)
        s.ehlo("python.client.test")
        s.user, s.password = a.user, a.password
        code, reply = s.auth(a.mechanism, getattr(s, "auth_" + a.mechanism.lower()), initial_response_ok=a.mechanism == "PLAIN")
        for _ in range(a.count):
            s.mail(a.sender)
            for r in a.rcpt:
                s.rcpt(r)
            code, reply = s.data(content)
            results.append({"code": code, "reply": reply.decode()})
        s.quit()
    except smtplib.SMTPResponseException as e:
        results.append({"code": e.smtp_code, "reply": e.smtp_error.decode(errors="replace")})
    except (smtplib.SMTPException, OSError) as e:
        results.append({"code": 0, "reply": repr(e)})
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
