#!/usr/bin/env bash
# The test suite: unit and integration tests (the integration tests start
# private Dovecot servers; see tests/support/), then doc tests.
#
#   scripts/test.sh              everything
#   scripts/test.sh FILTER...    only matching tests (doc tests are skipped)
#
# Uses cargo-nextest when installed (one process per test, clearer report),
# otherwise cargo test. IDLEWILD_TEST_RUNNER=cargo|nextest forces a choice.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# The integration tests start real servers from Debian packages: make sure they are there.
scripts/install-deps.sh || exit 1

runner=${IDLEWILD_TEST_RUNNER:-}
if [ -z "$runner" ]; then
    if cargo nextest --version >/dev/null 2>&1; then
        runner=nextest
    else
        runner=cargo
    fi
fi

status=0
case "$runner" in
    nextest)
        echo "==> cargo nextest run --all-targets --no-fail-fast $*"
        cargo nextest run --all-targets --no-fail-fast "$@" || status=$?
        ;;
    cargo)
        echo "==> cargo test --all-targets --no-fail-fast $*"
        cargo test --all-targets --no-fail-fast "$@" || status=$?
        ;;
    *)
        echo "error: IDLEWILD_TEST_RUNNER must be cargo or nextest, not '$runner'" >&2
        exit 2
        ;;
esac

# Neither of the runs above includes doc tests, which exist only for a library.
if [ $# -eq 0 ] && cargo metadata --no-deps --format-version 1 | grep -q '"kind":\["lib"\]'; then
    echo "==> cargo test --doc"
    cargo test --doc || status=$?
fi

if [ "$status" -eq 0 ]; then
    echo "==> all tests passed"
else
    echo "==> tests FAILED (exit status $status)" >&2
fi
exit "$status"
