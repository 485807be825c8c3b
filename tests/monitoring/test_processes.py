"""Two real daphne worker processes sharing one database: the dashboard sums them.

Each process counts its own traffic (``/local-stats/`` answers its ``get_stats()``);
the dashboard's JSON, ``tfbatch_stats --json`` and the Prometheus exposition must all
add up to the sum of those, and a process that dies must drop out of the sums.
"""

from __future__ import annotations

import json
import signal
import urllib.request

from tfbatch_django.batching.stats import LATENCY_BOUNDS, percentile_from_buckets
from tfbatch_django.monitoring.figures import COUNTERS
from tfbatch_django.monitoring.prometheus import LATENCY_BUCKETS

from .prometheus_text import samples_of
from .servers import DATA, StaffSession, daphne_servers, manage
from .workloads import wait_for


def dense(sparse: dict[str, int]) -> list[int]:
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    for index, n in sparse.items():
        counts[int(index)] += n
    return counts


def test_two_processes_are_summed_and_a_dead_one_drops_out(tmp_path):
    with daphne_servers(tmp_path, 2) as (servers, env):
        a, b = servers
        assert a.get_json("/burst/double/?n=30")["ok"] == 30
        assert b.get_json("/burst/double/?n=50")["ok"] == 50
        assert b.get_json("/burst/double/?n=20&rows=3")["ok"] == 20
        local = {server.pid: server.get_json("/local-stats/")["double"] for server in servers}
        assert {pid: s["requests"] for pid, s in local.items()} == {a.pid: 30, b.pid: 70}

        session = StaffSession(a)

        def published() -> dict | None:
            data = session.get_json(DATA)
            seen = {p["pid"]: p["models"]["double"]["requests"] for p in data["processes"]}
            return data if seen == {a.pid: 30, b.pid: 70} else None

        data = wait_for(published, 30, "both processes' final numbers on the dashboard")
        model = data["models"]["double"]
        assert model["processes"] == 2
        assert model["status"] == "ready"
        for counter in COUNTERS:
            assert model[counter] == local[a.pid][counter] + local[b.pid][counter], counter
        assert model["rows"] == 30 + 50 + 60
        sizes: dict[str, int] = {}
        for snap in local.values():
            for size, n in snap["batch_size_histogram"].items():
                sizes[size] = sizes.get(size, 0) + n
        assert model["batch_size_histogram"] == dict(sorted(sizes.items(), key=lambda kv: int(kv[0])))
        merged = [
            x + y
            for x, y in zip(*(dense(s["histograms"]["end_to_end"]["buckets"]) for s in local.values()), strict=True)
        ]
        for q in (50, 95, 99):
            assert model["latency_ms"]["end_to_end"][f"p{q}_ms"] == round(percentile_from_buckets(merged, q) * 1e3, 4)

        # The command prints the same numbers.
        command = manage(env, "tfbatch_stats", "--json")
        assert command.returncode == 0, command.stderr
        printed = json.loads(command.stdout)["models"]["double"]
        assert {c: printed[c] for c in COUNTERS} == {c: model[c] for c in COUNTERS}
        table = manage(env, "tfbatch_stats").stdout
        assert str(a.pid) in table and str(b.pid) in table

        # Prometheus, multiprocess mode: either process exposes both processes' counts.
        with urllib.request.urlopen(b.url("/metrics"), timeout=30) as response:
            samples = samples_of(response.read().decode(), "double")
        assert samples[("tfbatch_requests_total", "ok")] == model["completed"]
        assert samples[("tfbatch_batch_size_count", None)] == model["batches"]
        assert samples[("tfbatch_batch_size_sum", None)] == model["rows"]
        for edge in LATENCY_BUCKETS:
            below = sum(n for n, bound in zip(merged, LATENCY_BOUNDS, strict=False) if bound <= edge)
            assert samples[("tfbatch_request_latency_seconds_bucket", edge)] == below, edge

        # A worker that dies without a word drops out once it is stale.
        b.process.send_signal(signal.SIGKILL)
        b.process.wait(10)

        def without_b() -> dict | None:
            data = session.get_json(DATA)
            return data if [p["pid"] for p in data["processes"]] == [a.pid] else None

        data = wait_for(without_b, 30, "the killed process to drop out")
        model = data["models"]["double"]
        assert (model["processes"], model["requests"], model["rows"]) == (1, 30, 30)
        assert [p["pid"] for p in data["stopped_processes"]] == [b.pid]
        assert data["stopped_processes"][0]["stopped_at"] is None  # went silent, not stopped cleanly

        # A worker that exits cleanly says so, and drops out at once.
        a.process.terminate()
        assert a.process.wait(15) == 0
        after = json.loads(manage(env, "tfbatch_stats", "--json").stdout)
        assert after["processes"] == []
        assert {p["pid"]: p["stopped_at"] is not None for p in after["stopped_processes"]} == {
            a.pid: True,
            b.pid: False,
        }
