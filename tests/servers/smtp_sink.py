#!/usr/bin/env python3
"""A scriptable receiving SMTP server for Ferry's delivery tests (aiosmtpd).

Listens on one or more addresses, optionally offers STARTTLS, answers RCPT
per recipient as told, and appends one JSON line per accepted message (and
per DATA received, before any deliberate delay) to --record.
"""
import argparse
import asyncio
import json
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, args, listen):
        self.args = args
        self.listen = listen
        self.replies = {}  # rcpt -> [reply, remaining times or None]
        for spec in args.reply:
            rcpt, rest = spec.split("=", 1)
            parts = rest.rsplit(":", 1)
            times = int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else None
            reply = parts[0] if times is not None else rest
            self.replies[rcpt.lower()] = [reply, times]
        self.lock = threading.Lock()

    def record(self, event):
        with self.lock, open(self.args.record, "a") as f:
            f.write(json.dumps(event) + "\n")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rule = self.replies.get(address.lower())
        if rule is not None and (rule[1] is None or rule[1] > 0):
            if rule[1] is not None:
                rule[1] -= 1
            return rule[0]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        event = {
            "listen": self.listen,
            "peer": "%s:%d" % session.peer[:2],
            "tls": session.ssl is not None,
            "mail_from": envelope.mail_from,
            "rcpts": envelope.rcpt_tos,
            "data": envelope.original_content.decode("utf-8", "replace"),
            "time": time.time(),
        }
        self.record(event)
        if any(r.lower() in self.args.slow for r in envelope.rcpt_tos):
            await asyncio.sleep(self.args.slow_seconds)
        return "250 2.0.0 accepted"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", action="append", required=True, help="host:port")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--record", required=True)
    p.add_argument("--reply", action="append", default=[], help="rcpt=CODE TEXT[:times]")
    p.add_argument("--slow", action="append", default=[], help="recipient whose DATA reply is delayed")
    p.add_argument("--slow-seconds", type=float, default=30)
    p.add_argument("--seven-bit", action="store_true", help="offer neither 8BITMIME nor SMTPUTF8")
    args = p.parse_args()
    args.slow = [s.lower() for s in args.slow]

    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)

    controllers = []
    for listen in args.listen:
        host, port = listen.rsplit(":", 1)
        handler = Handler(args, listen)
        c = Controller(
            handler,
            hostname=host,
            port=int(port),
            server_hostname="sink.test",
            tls_context=tls,
            require_starttls=False,
            enable_SMTPUTF8=not args.seven_bit,
            decode_data=args.seven_bit,
        )
        c.start()
        controllers.append(c)
    print("ready", flush=True)
    try:
        sys.stdin.read()  # run until the test closes our stdin or kills us
    finally:
        for c in controllers:
            c.stop()


if __name__ == "__main__":
    main()
