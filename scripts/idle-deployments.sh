#!/usr/bin/env bash
# The supervisor's CPU and memory with N idle service deployments (default
# 100), each one instance of `sleep` in a bash-template sandbox: creates
# them in a fresh home (the first `deploy create` starts the supervisor in
# the background), lets them settle, then samples the supervisor's CPU time
# (utime + stime from /proc/PID/stat) over SECONDS seconds and its resident
# memory (VmRSS, VmHWM). The instances' own processes are not counted: they
# are the deployments' cost, not the supervisor's.
#
#   scripts/idle-deployments.sh [N] [SECONDS]     (uses target/release/shroud)
set -euo pipefail
N=${1:-100}
SECONDS_TO_SAMPLE=${2:-30}
BIN=${SHROUD_BIN:-$(dirname "$0")/../target/release/shroud}
HOME_DIR=$(mktemp -d)/home
export SHROUD_HOME=$HOME_DIR
cleanup() {
    if [ -f "$HOME_DIR/supervisor.lock" ]; then
        kill "$(cat "$HOME_DIR/supervisor.lock")" 2>/dev/null || true
        sleep 2
    fi
    # The deployments' disks (templates with disk_mb, as root) stay mounted
    # after their supervisor: unmount them (their loop devices go with them).
    grep " $HOME_DIR/" /proc/mounts | awk '{print $2}' | sort -r | while read -r point; do
        umount -l "$point" 2>/dev/null || true
    done
    rm -rf "$(dirname "$HOME_DIR")"
}
trap cleanup EXIT
printf 'sk-live-idle-%s' "$RANDOM$RANDOM" | "$BIN" secret set TOKEN 2>/dev/null
for i in $(seq 1 "$N"); do
    "$BIN" deploy create "idle-$i" --template bash --secret TOKEN -- sleep 1000000 >/dev/null
done
PID=$(cat "$HOME_DIR/supervisor.lock")
# Every instance up, then some settling.
for _ in $(seq 1 120); do
    running=$("$BIN" --json deploy list | python3 -c 'import json,sys; print(sum(d["state"]=="running" for d in json.load(sys.stdin)["deployments"]))')
    [ "$running" -ge "$N" ] && break
    sleep 1
done
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
before=$(ticks)
sleep "$SECONDS_TO_SAMPLE"
after=$(ticks)
cpu=$(python3 -c "print(f'{($after - $before) / $HZ / $SECONDS_TO_SAMPLE * 100:.2f}')")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
threads=$(awk '/Threads/ {print $2}' "/proc/$PID/status")
echo "deployments running: $running of $N"
echo "supervisor CPU over ${SECONDS_TO_SAMPLE}s: ${cpu}% of one core"
echo "supervisor memory: VmRSS $((rss / 1024)) MiB, peak $((hwm / 1024)) MiB, $threads threads"
