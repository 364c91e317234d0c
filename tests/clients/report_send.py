#!/usr/bin/env python3
"""Sends one report to Ferry's inbound listener as a receiving server's MTA
would, with Python's smtplib: EHLO, MAIL FROM:<> (the null sender), each
RCPT, then DATA if any recipient was accepted. Prints one JSON object with
every reply, so a test can assert each step.

Usage: report_send.py HOST PORT MESSAGE_FILE RCPT...
"""
import json
import smtplib
import sys


def main():
    host, port, path, rcpts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    with open(path, "rb") as f:
        content = f.read()
    out = {"rcpt": {}}
    with smtplib.SMTP(host, port, local_hostname="mx.dest.test", timeout=30) as smtp:
        code, _ = smtp.ehlo()
        out["ehlo"] = code
        out["ehlo_features"] = sorted(smtp.esmtp_features)
        code, text = smtp.mail("")
        out["mail"] = "%d %s" % (code, text.decode())
        accepted = 0
        for rcpt in rcpts:
            code, text = smtp.rcpt(rcpt)
            out["rcpt"][rcpt] = "%d %s" % (code, text.decode())
            accepted += code // 100 == 2
        if accepted:
            code, text = smtp.data(content)
            out["data"] = "%d %s" % (code, text.decode())
        else:
            smtp.rset()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
