#!/usr/bin/env bash
# Coverage-guided fuzzing of Ferry's parsers with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# Builds every target in fuzz/ once, then runs each (or those named) for
# the given seconds (default 300) and prints, per target, the seconds it
# ran, its executions, its coverage (edges, features) and whether it
# crashed. Exits 1 if any target crashed; the input that did is in
# fuzz/artifacts/<target>/ (replay: fuzz/target/<host>/release/<target> <file>,
# or cargo fuzz run -s none <target> <file>).
# `scripts/fuzz.sh 5` is the smoke run of `make test`.
#
# The committed seeds (fuzz/corpus/<target>/seed-*) are only read: what
# libFuzzer finds goes to fuzz/target/corpus/<target>/, kept between runs
# so the next starts where this one stopped, and never committed.
#
# Built without a sanitizer (-s none): the code under test is safe Rust,
# where AddressSanitizer finds nothing that a panic or overflow check does
# not; without it builds are faster, runs make twice the executions, and
# the stable toolchain does (cargo-fuzz's coverage flags are stable rustc
# flags; only a sanitizer needs nightly: FUZZ_SANITIZER=address uses
# `cargo +nightly`). Debug assertions and overflow checks are on
# (cargo-fuzz's default). Honours CARGO_BUILD_JOBS.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
SANITIZER=${FUZZ_SANITIZER:-none}
seconds=${1:-300}
shift || true
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [seconds-per-target] [target...]" >&2
    exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

toolchain=()
if [[ $SANITIZER != none ]]; then
    toolchain=(+nightly)
fi
if [[ $(cargo fuzz --version 2>/dev/null) != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

started=$(date +%s)
echo "fuzz: building ${#targets[@]} targets"
cargo "${toolchain[@]}" fuzz build -s "$SANITIZER"
echo "fuzz: built in $(($(date +%s) - started)) s; ${seconds} s per target"

host=$(rustc -vV | sed -n 's/^host: //p')
bin=fuzz/target/$host/release
logs=fuzz/target/logs
mkdir -p "$logs"
crashed=()
printf '%-14s %8s %12s %8s %8s  %s\n' target seconds executions edges features crash
for target in "${targets[@]}"; do
    grown=fuzz/target/corpus/$target
    mkdir -p "$grown" "fuzz/artifacts/$target"
    log=$logs/$target.log
    begin=$(date +%s)
    status=0
    # The grown corpus first: libFuzzer writes new inputs to the first
    # directory only, so the seeds stay as committed.
    "$bin/$target" -artifact_prefix="fuzz/artifacts/$target/" \
        -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
        "$grown" "fuzz/corpus/$target" >"$log" 2>&1 || status=$?
    ran=$(($(date +%s) - begin))
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [[ -z $executions ]]; then
        executions=$(grep -o '^#[0-9]*' "$log" | tail -n 1 | tr -d '#' || true)
    fi
    edges=$(grep -o ' cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || true)
    features=$(grep -o ' ft: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || true)
    crash=no
    if ((status != 0)); then
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        crash="yes: ${artifact:-exit status $status, see $log}"
        crashed+=("$target")
    fi
    printf '%-14s %8s %12s %8s %8s  %s\n' "$target" "$ran" "${executions:-?}" "${edges:-?}" "${features:-?}" "$crash"
done

echo "fuzz: ${#targets[@]} targets in $(($(date +%s) - started)) s, ${#crashed[@]} crashed${crashed:+: ${crashed[*]}}"
for target in "${crashed[@]}"; do
    echo "--- $target ($logs/$target.log)"
    grep -m 1 -A 2 'panicked at' "$logs/$target.log" || true
    grep -E '== ERROR: libFuzzer|Test unit written|^Base64:' "$logs/$target.log" || true
done
((${#crashed[@]} == 0))
