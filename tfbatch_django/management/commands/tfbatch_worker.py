"""Serve the models whose ``WORKER`` is ``<name>`` to every web process, over the channel layer.

Run one per GPU (``CUDA_VISIBLE_DEVICES=0 python manage.py tfbatch_worker gpu``); several
processes of one name share the load. It publishes its statistics for the admin
dashboard like any serving process (unless ``STATS_PUBLISH_INTERVAL`` is None).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...exceptions import ModelNotFound


class Command(BaseCommand):
    help = "Serve the TFBATCH models whose WORKER is <name>, batching the requests of every web process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the WORKER name of the models to serve")
        parser.add_argument("--no-publish", action="store_true", help="do not publish stats for the dashboard")

    def handle(self, *args: Any, name: str, no_publish: bool, **options: Any) -> None:
        from ...monitoring import start_publishing
        from ...remote.server import WorkerServer

        if not logging.getLogger("tfbatch_django").handlers and not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        try:
            server = WorkerServer(name)
        except ModelNotFound as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"tfbatch worker {name!r} ({server.key}): {', '.join(server.models)}")
        self.stdout.flush()
        if not no_publish:
            from ...registry import registry

            registry.serve_worker(name)  # before the publisher's first get_stats()
            start_publishing()
        server.run()
