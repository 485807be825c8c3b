"""Workers publish their models' stats like any serving process; web processes leave a
worker-served model to its workers, so the dashboard sums each request once and its
process rows say which process serves which model."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np

from tests.remote.conftest import REPO, wait_for
from tfbatch_django import predict_sync
from tfbatch_django.monitoring.publisher import Publisher


def test_a_worker_publishes_and_a_web_process_does_not_publish_its_model(deployment, tmp_path, db):
    database = tmp_path / "db.sqlite3"
    deployment.env["TFBATCH_TEST_DB"] = str(database)
    migrate = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v0"],
        cwd=REPO,
        env=deployment.env,
        capture_output=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    publishing = deployment.start_worker(publish=True).process
    try:
        deployment.wait_ready()
        assert predict_sync("remote", np.ones((3, 3), np.float32)).tolist() == [[2, 2, 2]] * 3

        def published() -> dict:
            with sqlite3.connect(database) as conn:
                rows = conn.execute("SELECT pid, stats FROM tfbatch_django_publishedprocess").fetchall()
            return {pid: json.loads(stats) for pid, stats in rows}

        wait_for(lambda: published().get(publishing.pid, {}).get("remote", {}).get("rows") == 3, 30, "worker row")
        snap = published()[publishing.pid]["remote"]
        assert snap["settings"]["WORKER"] == deployment.name and snap["status"] == "ready"
    finally:
        deployment.workers[0].stop()

    # This (web) process publishes its own models only: "local", not the worker-served ones.
    Publisher().publish()
    from tfbatch_django.models import PublishedProcess

    (row,) = PublishedProcess.objects.all()
    assert set(row.stats) == {"local"}
