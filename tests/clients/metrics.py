#!/usr/bin/env python3
"""Parses Prometheus text exposition from stdin with Prometheus's own Python
parser (prometheus_client) and prints every sample as JSON:
[{"name": ..., "labels": {...}, "value": ...}, ...]. A document the parser
refuses exits non-zero."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    samples = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        for s in family.samples:
            samples.append({"name": s.name, "labels": s.labels, "value": s.value})
    json.dump(samples, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
