"""A real daphne serving the demo project, and the demo model it serves.

The model is trained once per test session (in this process, which has TensorFlow
loaded anyway) into a temporary folder; daphne is a subprocess on a free loopback
port, pointed at that model. Together with this process that makes two TensorFlow
processes for the whole end-to-end suite.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command

from tests import servers
from tests.servers import Server, running


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "digits"
    from demo_project.demo.management.commands.tfbatch_demo_model import Command

    with open(os.devnull, "w") as quiet:
        call_command(Command(), path=path, stdout=quiet)
    return path


@pytest.fixture(scope="session")
def direct_model(demo_model: Path) -> Any:
    """The exported signature, called directly: the answers the server must reproduce."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(demo_model)).signatures["serving_default"]
    return lambda x: signature(pixels=tf.constant(x, tf.float32))["probabilities"].numpy()


@pytest.fixture(scope="session")
def digit_images() -> np.ndarray:
    from demo_project.demo.training import load_digits_split

    return load_digits_split()[2]


@pytest.fixture(scope="session")
def daphne(demo_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        servers.daphne_argv("demo_project.asgi:application"),
        {"DJANGO_SETTINGS_MODULE": "demo_project.settings", "TFBATCH_DEMO_MODEL_DIR": str(demo_model)},
        tmp_path_factory,
        "tfbatch/v1/models/digits",
        lambda r: r.status_code == 200 and r.json()["model_version_status"][0]["state"] == "AVAILABLE",
    ) as server:
        yield server
