"""One host-helper call: the resident agent against a ``python3 -c`` start per call, and
over SSH against the connection's own round trip, side by side in one run.

Locally and over SSH (a real OpenSSH server on 127.0.0.1, started by the benchmark, as
the tests do), each way answers the same cheap question (``port_free``) ``calls`` times:

- **one-off**: ``python3 -c <helper>`` with the request on stdin, as every call went
  before the agent (an interpreter start per call, the script in argv);
- **agent**: the same request on the resident agent's channel;
- **round trip** (SSH only): one line echoed by ``cat`` on an open channel of the same
  connection, the least any call over it can take.

Targets: an agent call under 5 ms locally; over SSH under the round trip + 2 ms.
Full: 300 calls each; --quick: 60. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from sshd import running_sshd  # noqa: E402

from slipway.config.model import SshConfig, parse_host  # noqa: E402
from slipway.state.host import _call_once, attach_agent, call  # noqa: E402
from slipway.transports import connect  # noqa: E402
from slipway.transports.base import Transport  # noqa: E402
from slipway.transports.local import LocalTransport  # noqa: E402

REQUEST = {"op": "port_free", "port": 1}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * int(q * 100) // 100) - 1)]


def timed(calls: int, one: Callable[[], object]) -> list[float]:
    one()  # warm: the agent's start and upload are paid once per command, not per call
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        one()
        seconds.append((time.perf_counter() - started) * 1000)
    return seconds


def echo_round_trip(transport: Transport) -> Callable[[], object]:
    handle = transport.spawn(["cat"])

    def one() -> object:
        handle.write("x\n")
        return handle.readline(10)

    return one


def measure(transport: Transport, root: str, calls: int, ssh: bool) -> dict[str, list[float]]:
    attach_agent(transport, root)
    found = {
        "one-off": timed(calls, lambda: _call_once(transport, dict(REQUEST))),
        "agent": timed(calls, lambda: call(transport, "port_free", port=1)),
    }
    if ssh:
        found["round trip"] = timed(calls, echo_round_trip(transport))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 calls each instead of 300")
    args = parser.parse_args()
    calls = 60 if args.quick else 300
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="slipway-agent-bench-") as base:
        local = LocalTransport()
        results = {"local": measure(local, f"{base}/local", calls, ssh=False)}
        local.close()
        with running_sshd(Path(base) / "sshd") as server:
            config = SshConfig(key=str(server.client_key), known_hosts=str(server.known_hosts))
            remote = connect(parse_host(server.host), config)
            try:
                results["ssh"] = measure(remote, f"{base}/ssh", calls, ssh=True)
            finally:
                remote.close()

    figures: dict[str, object] = {"benchmark": "agent", "quick": args.quick, "calls": calls}
    print(f"one host-helper call, {calls} calls each, same run\n")
    print(f"{'where':<8}{'how':<14}{'p50 ms':>10}{'p95 ms':>10}")
    print("-" * 42)
    for where, ways in results.items():
        for how, values in ways.items():
            p50, p95 = statistics.median(values), percentile(values, 0.95)
            print(f"{where:<8}{how:<14}{p50:>10.2f}{p95:>10.2f}")
            key = f"{where}_{how.replace(' ', '_').replace('-', '_')}"
            figures[f"{key}_p50_ms"] = round(p50, 3)
            figures[f"{key}_p95_ms"] = round(p95, 3)
    local_p50 = statistics.median(results["local"]["agent"])
    one_off_p50 = statistics.median(results["local"]["one-off"])
    ssh_over = statistics.median(results["ssh"]["agent"]) - statistics.median(
        results["ssh"]["round trip"]
    )
    figures["local_one_off_over_agent"] = round(one_off_p50 / local_p50, 1)
    figures["ssh_agent_minus_round_trip_ms"] = round(ssh_over, 3)
    figures["target_local_ms"] = 5
    figures["target_ssh_over_round_trip_ms"] = 2
    figures["targets_met"] = local_p50 < 5 and ssh_over < 2
    figures["seconds"] = round(time.monotonic() - started, 1)
    print(
        f"\nlocal: the agent is {one_off_p50 / local_p50:.1f}x faster than a python3 start;"
        f" over SSH it costs the round trip + {ssh_over:.2f} ms"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
