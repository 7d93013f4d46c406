#!/usr/bin/env bash
# Fuzzes the API with Schemathesis against its own served OpenAPI document:
# starts `shroud serve` on a throwaway home, makes a token with grants on
# the vaults the routes use, and runs every check (see api/schemathesis.toml
# and the exclusion below for the one documented exception). Exits non-zero on any failure.
#
#   scripts/schemathesis.sh [EXAMPLES] [SEED]
#
# Needs `st` (pip install schemathesis) on PATH or $SCHEMATHESIS, and a
# built binary ($SHROUD_BIN, default target/debug/shroud). `.ci/run` runs
# it with 25 examples per operation and a fixed seed; pass a larger count
# and no seed (`random`) to search further.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-25}
seed=${2:-random}
shroud=${SHROUD_BIN:-target/debug/shroud}
st=${SCHEMATHESIS:-st}
home=$(mktemp -d)
log=$(mktemp)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    # Sandboxes the fuzzer created may hold a mounted disk under the home.
    grep -F " $home/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$home" "$log"
}
trap cleanup EXIT

token=$("$shroud" --home "$home" token create fuzz --user alice \
    --grant default:read --grant default:write --grant workspace:read --grant workspace:write)
printf 'fuzz-value-0123456789' | "$shroud" --home "$home" secret set API_KEY 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$shroud" --home "$home" serve --listen "127.0.0.1:$port" >"$log" 2>&1 &
server=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/api/health" >/dev/null 2>&1 && break
    sleep 0.1
done
seed_args=()
[ "$seed" != random ] && seed_args=(--seed "$seed")
status=0
# From the temporary home: Schemathesis keeps a cache of the failures it
# found (.schemathesis/) where it runs, and replays them; none is kept here.
config="$PWD/api/schemathesis.toml"
(cd "$home" && "$st" --config-file "$config" run "http://127.0.0.1:$port/api/openapi.json" \
    --checks all --exclude-checks missing_required_header -H "Authorization: Bearer $token" \
    --max-examples "$examples" --request-timeout 20 --no-color "${seed_args[@]}") || status=$?
if [ $status -ne 0 ]; then
    echo "--- server log (last 40 lines) ---"
    tail -40 "$log"
fi
exit $status
