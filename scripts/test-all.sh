#!/usr/bin/env bash
# Runs OpenTrail's whole test suite on a fresh machine, installing what it needs first:
# formatting and lint checks, then every unit, integration, crash and compatibility test
# (debug build: fast to compile on small machines).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: a Rust toolchain (cargo) is required; see https://rustup.rs" >&2
    exit 1
fi

# The aws CLI (pip's awscli) drives the README flow in the compatibility tests.
if ! aws --version >/dev/null 2>&1; then
    echo "installing the aws CLI (pip install awscli)"
    python3 -m pip install --quiet --disable-pip-version-check awscli
fi
export OPENTRAIL_REQUIRE_AWS_CLI=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked 2>&1 | tee target/test-output.txt
# One closing line for the whole run.
passed=$(grep -Eo '^test result: .*' target/test-output.txt | awk '{p+=$4; f+=$6} END {print p+0}')
failed=$(grep -Eo '^test result: .*' target/test-output.txt | awk '{p+=$4; f+=$6} END {print f+0}')
echo "total: ${passed} passed, ${failed} failed"
