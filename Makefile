# The commands the README gives. `make run` and `make test` must work on a fresh machine.
CARGO ?= cargo
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 5
SHELL := bash

.PHONY: run test test-deps build lint fmt bench k8s image-rootfs image-oci fuzz

build:
	$(CARGO) build --workspace --bins

run:
	$(CARGO) build --release --bin ferry
	./scripts/run-demo.sh

test-deps:
	./scripts/install-test-deps.sh

test: test-deps
	$(CARGO) build --workspace --bins
	# Every fuzz target builds and runs clean for a few seconds.
	./scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS)
	mkdir -p target
	set -o pipefail; $(CARGO) test --workspace 2>&1 | tee target/test.log
	./scripts/test-summary.sh target/test.log

bench:
	./scripts/install-bench-deps.sh
	$(CARGO) build --release --bin ferry --bin ferry-load
	python3 loadtest/bench.py

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# The plain manifests in k8s/: the chart rendered with its default values.
k8s: test-deps
	$${FERRY_TOOLS_DIR:-$$HOME/.cache/ferry-tools}/k8s/bin/python tests/clients/chart.py --chart helm/ferry --k8s k8s --write-k8s >/dev/null

# The image's root filesystem (distroless cc-debian12:nonroot from Debian
# packages, then the release binary) without a registry; image-oci also
# commits it with buildah (vfs, no daemon) as an OCI layout and prints its
# digest.
image-rootfs:
	$(CARGO) build --release --locked --bin ferry
	./scripts/build-rootfs.sh target/release/ferry target/image-rootfs

image-oci:
	command -v buildah >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah)
	$(CARGO) build --release --locked --bin ferry
	./scripts/build-rootfs.sh --oci target/image-oci target/release/ferry target/image-rootfs

# Coverage-guided fuzzing (cargo-fuzz, libFuzzer): every target for
# FUZZ_SECONDS each (default 300).
fuzz:
	./scripts/fuzz.sh $(FUZZ_SECONDS)
