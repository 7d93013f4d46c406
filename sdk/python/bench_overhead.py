#!/usr/bin/env python3
"""What the SDK adds to a sandbox exec, against raw http.client.

Starts its own `shroud serve` (binary: $SHROUD_BIN, else ../../target/debug/shroud
from this file), creates a sandbox, then runs a buffered exec of `true`
(command ["true"]) N times through each client, interleaved (raw, SDK, SDK,
raw, ...) so that drift in the server or the machine hits both alike. Both
use one keep-alive connection; the raw side also parses the JSON answer.

    python bench_overhead.py [-n 300] [--warmup 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    import shroud
except ImportError:  # run from the source tree
    sys.path.insert(0, str(HERE / "src"))
    import shroud

from shroud.testing import LocalServer, find_binary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=300, help="execs per client (default 300)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed execs per client first (default 20)")
    args = parser.parse_args()

    try:
        binary = find_binary(HERE.parent.parent / "target" / "debug" / "shroud")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    with LocalServer(binary) as server:
        token = server.create_token("bench", grants=["default:read", "default:write"])
        rt = shroud.Shroud(base_url=server.url, token=token)
        sandbox = rt.sandboxes.create(template="bash")
        try:
            path = f"/api/sandboxes/{sandbox.id}/exec"
            body = json.dumps({"command": ["true"]}).encode()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            raw_conn = http.client.HTTPConnection("127.0.0.1", server.port)

            cpu = {"raw": 0.0, "sdk": 0.0}

            def raw() -> float:
                c = time.process_time()
                t = time.perf_counter()
                raw_conn.request("POST", path, body=body, headers=headers)
                resp = raw_conn.getresponse()
                data = json.loads(resp.read())
                elapsed = time.perf_counter() - t
                cpu["raw"] += time.process_time() - c
                assert resp.status == 200 and data["exit_code"] == 0, data
                return elapsed

            def sdk() -> float:
                c = time.process_time()
                t = time.perf_counter()
                result = sandbox.exec(["true"])
                elapsed = time.perf_counter() - t
                cpu["sdk"] += time.process_time() - c
                assert result.exit_code == 0
                return elapsed

            for _ in range(args.warmup):
                raw()
                sdk()
            cpu["raw"] = cpu["sdk"] = 0.0
            raw_ms, sdk_ms = [], []
            for i in range(args.n):
                if i % 2 == 0:
                    raw_ms.append(raw() * 1000)
                    sdk_ms.append(sdk() * 1000)
                else:
                    sdk_ms.append(sdk() * 1000)
                    raw_ms.append(raw() * 1000)
            raw_conn.close()
        finally:
            sandbox.delete()
            rt.close()

    def line(label: str, values: list) -> str:
        return f"{label:<22} median {statistics.median(values):7.3f} ms   mean {statistics.fmean(values):7.3f} ms"

    print(f"buffered sandbox exec of `true`, {args.n} calls each, interleaved ({binary})")
    print(line("raw http.client", raw_ms))
    print(line("shroud SDK", sdk_ms))
    d_med = statistics.median(sdk_ms) - statistics.median(raw_ms)
    d_mean = statistics.fmean(sdk_ms) - statistics.fmean(raw_ms)
    paired = statistics.median(s - r for s, r in zip(sdk_ms, raw_ms))
    print(
        f"{'client CPU per call':<22} raw {cpu['raw'] / args.n * 1000:.3f} ms   SDK {cpu['sdk'] / args.n * 1000:.3f} ms"
    )
    print(f"{'SDK overhead':<22} median {d_med:+7.3f} ms   mean {d_mean:+7.3f} ms   (median of paired differences {paired:+.3f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
