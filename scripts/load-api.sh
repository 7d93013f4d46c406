#!/usr/bin/env bash
# Load test of `shroud serve` on 127.0.0.1 with wrk (Debian package `wrk`):
# metadata reads, then single-secret writes, over 16 connections; then checks
# that nothing was lost (audit chain verified). Bounded: 10 s per phase, and
# the server is stopped at the end. Usage: scripts/load-api.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
command -v wrk >/dev/null || { echo "error: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet
shroud=target/release/shroud
home=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$home"' EXIT
export SHROUD_HOME=$home
token=$($shroud token create load --grant ci:write 2>/dev/null)
$shroud secret set A value-of-a-1234 --vault ci 2>/dev/null
$shroud serve --listen 127.0.0.1:17999 2>"$home/serve.log" &
server=$!
sleep 0.5
script=$home/post.lua
cat >"$script" <<'LUA'
local thread_id = 0
function setup(thread) thread_id = thread_id + 1; thread:set("id", thread_id) end
local counter = 0
function request()
  counter = counter + 1
  local body = '{"vault_name":"ci","secrets":[{"name":"W' .. id .. '_' .. counter .. '","secret":"value-' .. counter .. '-xyz"}]}'
  return wrk.format("POST", "/api/vaults/secrets",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("TOKEN")}, body)
end
LUA
echo "== metadata reads (GET /api/vaults/ci/secrets/A), 16 connections"
wrk -t2 -c16 -d"${seconds}s" -H "Authorization: Bearer $token" http://127.0.0.1:17999/api/vaults/ci/secrets/A
echo "== single-secret writes (POST /api/vaults/secrets), 16 connections"
TOKEN=$token wrk -t2 -c16 -d"${seconds}s" -s "$script" http://127.0.0.1:17999
kill "$server"; wait "$server" || true
echo "== secrets written: $($shroud secret list --vault ci | wc -l)"
$shroud audit verify
