#!/usr/bin/env bash
# The whole test suite, the README's test command:
#   1. `cargo test`: unit tests and the integration tests (the real binary,
#      SQLite, a throwaway PostgreSQL cluster, real sandboxes and servers);
#   2. the served OpenAPI document, checked by openapi-spec-validator and
#      fuzzed by Schemathesis (scripts/schemathesis.sh, bounded: 25 examples
#      per operation, a fixed seed);
#   3. the Python SDK's tests (pytest) and the TypeScript SDK's (type check,
#      then `node --test`), each against a real `shroud serve`.
# PyPI packages go to a virtualenv under target/ (scripts/test-requirements.txt);
# the TypeScript SDK's one dev dependency (typescript) comes from npm.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=${SHROUD_TEST_VENV:-$root/target/test-venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! cmp -s scripts/test-requirements.txt "$venv/.installed" 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/test-requirements.txt
    cp scripts/test-requirements.txt "$venv/.installed"
fi

# The awsv4 test compares our signatures with botocore's: in this suite it
# must run, not skip.
export SHROUD_TEST_PYTHON="$venv/bin/python" SHROUD_REQUIRE_BOTOCORE=1
cargo test --locked
export SHROUD_BIN="$root/target/debug/shroud"

echo "== OpenAPI document: validation"
"$venv/bin/openapi-spec-validator" api/openapi.json
echo "== OpenAPI document: Schemathesis"
SCHEMATHESIS="$venv/bin/st" scripts/schemathesis.sh 25 20261201

echo "== Python SDK"
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps ./sdk/python
(cd sdk/python && "$venv/bin/python" -m pytest -q -p no:cacheprovider tests)

echo "== TypeScript SDK"
(
    cd sdk/typescript
    npm ci --no-audit --no-fund --loglevel=error
    npm run --silent typecheck
    node --test
)
