#!/usr/bin/env bash
# Sums cargo's "test result:" lines into one closing line, so the run ends on
# the totals rather than on the last (possibly empty) doc-test target.
set -euo pipefail
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed;?$/) p += $i
            if ($(i+1) ~ /^failed;?$/) f += $i
            if ($(i+1) ~ /^ignored;?$/) s += $i
        }
     }
     END { printf "cargo test: %d passed, %d failed, %d skipped\n", p, f, s; exit (f > 0) }' "$1"
