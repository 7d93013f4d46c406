#!/usr/bin/env bash
# Load test of `shroud serve` on 127.0.0.1 with wrk (Debian package `wrk`):
# metadata reads, then single-secret writes, over 16 connections (or
# $CONNECTIONS, split between the nodes); then checks that nothing was lost
# (every secret counted, audit chain verified).
#
#   scripts/load-api.sh [seconds]              one node on the home's SQLite
#   scripts/load-api.sh [seconds] --postgres   two nodes on one PostgreSQL
#                                              (a throwaway cluster, durable
#                                              defaults), half the
#                                              connections each
#
# Bounded: `seconds` (default 10) per phase; servers and cluster are stopped
# at the end, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
backend=${2:-sqlite}
command -v wrk >/dev/null || { echo "error: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet
shroud=$PWD/target/release/shroud
work=$(mktemp -d)
chmod 755 "$work"
pids=()
pg_bin=""
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "$pg_bin" ]; then
        run_pg "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL refuses to run as root: then it runs as `postgres`.
run_pg() {
    if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups "$@"; else "$@"; fi
}

unset SHROUD_STORE SHROUD_MASTER_KEY
homes=("$work/home-a")
if [ "$backend" = --postgres ]; then
    pg_bin=$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | sort | tail -1)")")
    [ "$(id -u)" = 0 ] && chown postgres: "$work"
    run_pg "$pg_bin/initdb" --auth=trust --username=postgres --encoding=UTF8 -D "$work/pg" >/dev/null
    pg_port=17990
    run_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
        -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
    run_pg "$pg_bin/createdb" -h "$work" -p "$pg_port" -U postgres vault
    export SHROUD_STORE="postgres://postgres@127.0.0.1:$pg_port/vault"
    homes+=("$work/home-b")
fi
export SHROUD_HOME=${homes[0]}
token=$($shroud token create load --grant ci:write 2>/dev/null)
$shroud secret set A value-of-a-1234 --vault ci 2>/dev/null
if [ ${#homes[@]} = 2 ]; then
    # The second node: a home of its own with the same master key.
    mkdir -m 700 "${homes[1]}"
    cp "${homes[0]}/master.key" "${homes[1]}/master.key"
fi
ports=()
for i in "${!homes[@]}"; do
    port=$((17998 + i))
    SHROUD_HOME=${homes[$i]} SHROUD_NODE="node-$i" \
        $shroud serve --listen "127.0.0.1:$port" 2>"$work/serve-$i.log" &
    pids+=($!)
    ports+=("$port")
done
for port in "${ports[@]}"; do
    for _ in $(seq 50); do
        curl -s -o /dev/null "http://127.0.0.1:$port/api/openapi.json" && break
        sleep 0.1
    done
done

script=$work/post.lua
cat >"$script" <<'LUA'
local thread_id = 0
function setup(thread) thread_id = thread_id + 1; thread:set("id", thread_id) end
local counter = 0
function request()
  counter = counter + 1
  local body = '{"vault_name":"ci","secrets":[{"name":"W' .. os.getenv("NODE") .. '_' .. id .. '_' .. counter .. '","secret":"value-' .. counter .. '-xyz"}]}'
  return wrk.format("POST", "/api/vaults/secrets",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("TOKEN")}, body)
end
LUA
connections=$((${CONNECTIONS:-16} / ${#ports[@]}))

# Runs wrk against every node at once; prints each node's report and the sum.
phase() {
    local title=$1; shift
    echo "== $title, ${#ports[@]} node(s) x $connections connections, ${seconds}s"
    local reports=()
    for i in "${!ports[@]}"; do
        NODE=$i TOKEN=$token wrk -t1 -c"$connections" -d"${seconds}s" --latency "$@" \
            "http://127.0.0.1:${ports[$i]}${path}" >"$work/wrk-$i.txt" &
        reports+=("$work/wrk-$i.txt")
    done
    wait_wrk
    local total=0
    for report in "${reports[@]}"; do
        grep -E "Requests/sec|Non-2xx|Socket errors|50%|99%" "$report" | sed 's/^/    /'
        rate=$(awk '/Requests\/sec/ {print $2}' "$report")
        total=$(awk -v a="$total" -v b="$rate" 'BEGIN {printf "%.0f", a + b}')
    done
    echo "   total: $total requests/s"
}
wait_wrk() {
    for job in $(jobs -p); do
        case " ${pids[*]} " in *" $job "*) ;; *) wait "$job" ;; esac
    done
}

path=/api/vaults/ci/secrets/A
phase "metadata reads (GET $path)" -H "Authorization: Bearer $token"
path=/
phase "single-secret writes (POST /api/vaults/secrets)" -s "$script"
requests=$(cat "$work"/wrk-*.txt | awk '/requests in/ {sum += $1} END {print sum}')
for pid in "${pids[@]}"; do kill "$pid"; done
wait_wrk
written=$(( $($shroud secret list --vault ci | wc -l) - 1 ))
echo "== secrets written: $written (wrk counted $requests answered; a request cut off at the end may be written unanswered)"
[ "$written" -ge "$requests" ] || { echo "error: $((requests - written)) acknowledged writes are missing" >&2; exit 1; }
$shroud audit verify
