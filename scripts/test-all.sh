#!/usr/bin/env bash
# Runs OpenTrail's whole test suite on a fresh machine, installing what it needs first:
# formatting and lint checks, then every unit, integration, crash and compatibility test
# (debug build: fast to compile on small machines).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each phase prints its duration, so a slow one is visible in CI's log.
phase_started=$SECONDS
run_started=$SECONDS
phase() {
    local now=$SECONDS
    if [ -n "${phase_name:-}" ]; then
        echo "-- ${phase_name}: $((now - phase_started)) s"
    fi
    phase_name=$1
    phase_started=$now
    [ -n "$phase_name" ] && echo "== $phase_name"
    return 0
}
phase "install tools"

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

# DuckDB checks the Lake's answers and reads its Parquet files in the compatibility tests.
if ! python3 -c "import duckdb" >/dev/null 2>&1; then
    echo "installing DuckDB for Python (pip install duckdb)"
    python3 -m pip install --quiet --disable-pip-version-check duckdb
fi
export OPENTRAIL_REQUIRE_DUCKDB=1

# A real, separate S3-compatible server for the external-bucket delivery tests.
if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
    echo "installing s3s-fs (cargo install s3s-fs --version 0.14.1 --features binary)"
    cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
fi
export OPENTRAIL_REQUIRE_S3S_FS=1

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
phase "cargo test"
# --no-fail-fast: a failing test binary does not hide the results of the ones after it, so one
# run reports every failure (it costs nothing when everything passes).
cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/test-output.txt
# A short fuzz run of each network-facing parser (OPENTRAIL_FUZZ_SECONDS=0 skips it).
fuzz_seconds=${OPENTRAIL_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" -gt 0 ]; then
    phase "fuzz build"
    command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
    # RUSTC_BOOTSTRAP lets the stable toolchain take cargo-fuzz's instrumentation flags. A dev
    # build without a sanitizer compiles fastest, and Rust's own checks turn memory errors into
    # the panics libFuzzer reports. All four targets in one cargo run, so that both cores build
    # and link them; `cargo fuzz run` below then finds them up to date.
    if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build --dev --sanitizer none) > target/fuzz-build.log 2>&1; then
        tail -n 80 target/fuzz-build.log
        echo "the fuzz targets do not build" >&2
        exit 1
    fi
    phase "fuzz smoke: ${fuzz_seconds}s per target"
    (
        cd fuzz
        for target in request_decoder sigv4_header lake_sql s3_keys; do
            mkdir -p "corpus/$target"
            log="../target/fuzz-$target.log"
            if ! RUSTC_BOOTSTRAP=1 cargo fuzz run --dev --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
                -max_total_time="$fuzz_seconds" > "$log" 2>&1; then
                tail -n 80 "$log"
                echo "fuzz target $target failed (input saved under fuzz/artifacts/$target)" >&2
                exit 1
            fi
            echo "$target: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second\(s\)' "$log" | tail -n 1)"
        done
    )
fi
phase ""
echo "-- whole run: $((SECONDS - run_started)) s"
# One closing line for the whole run.
passed=$(grep -Eo '^test result: .*' target/test-output.txt | awk '{p+=$4; f+=$6} END {print p+0}')
failed=$(grep -Eo '^test result: .*' target/test-output.txt | awk '{p+=$4; f+=$6} END {print f+0}')
echo "total: ${passed} passed, ${failed} failed"
