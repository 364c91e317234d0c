#!/usr/bin/env python3
"""Independent DKIM and DMARC verification of a message signed by Ferry.

Uses dkimpy and authheaders against the test's own DNS server; prints JSON:
each signature's domain, algorithm and validity, the same with the body
changed, and the DMARC result.
"""
import argparse
import json
import re

import dkim
import dns.resolver
import authheaders


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dns", required=True, help="host:port")
    p.add_argument("--file", required=True)
    a = p.parse_args()
    host, port = a.dns.rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)

    def dnsfunc(name, timeout=5):
        # dkimpy asks with bytes and wants bytes; authheaders' DMARC lookup
        # asks with str and wants str.
        as_bytes = isinstance(name, bytes)
        if as_bytes:
            name = name.decode()
        try:
            answer = resolver.resolve(name.rstrip(".") + ".", "TXT", lifetime=timeout)
        except Exception:
            return None
        text = b"".join(b"".join(r.strings) for r in answer[:1])
        return text if as_bytes else text.decode()

    with open(a.file, "rb") as f:
        message = f.read()
    count = len(re.findall(rb"(?im)^DKIM-Signature:", message))

    def verify_all(msg):
        out = []
        d = dkim.DKIM(msg)
        for i in range(count):
            error = None
            try:
                ok = d.verify(idx=i, dnsfunc=dnsfunc)
            except dkim.DKIMException as e:
                ok, error = False, str(e)
            sig = d.signature_fields
            out.append({"domain": sig.get(b"d", b"").decode(), "algorithm": sig.get(b"a", b"").decode(), "valid": bool(ok), "error": error})
        return out

    head, _, body = message.partition(b"\r\n\r\n")
    tampered = head + b"\r\n\r\n" + body.replace(b"Hello", b"Jello", 1)
    dmarc = authheaders.authenticate_message(message, "verifier.test", dkim=True, dmarc=True, spf=False, dnsfunc=dnsfunc)
    print(json.dumps({"signatures": verify_all(message), "tampered": verify_all(tampered), "dmarc": dmarc}))


if __name__ == "__main__":
    main()
