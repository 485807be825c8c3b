"""Settings of the servers (daphne, uvicorn, runserver --noasgi) that tests/serving/test_servers.py starts:
fake models only (no TensorFlow in the server), the REST API under both doors."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = ["daphne", *INSTALLED_APPS]  # noqa: F405 - daphne's runserver has --noasgi (WSGI)
ROOT_URLCONF = "tests.serving.server_urls"
ALLOWED_HOSTS = ["127.0.0.1"]
TFBATCH = {
    "MODELS": {
        "double": {"RUNNER": "tests.fakes.double_runner"},
        "wide": {"RUNNER": "tests.serving.fakes.wide_runner", "MAX_BATCH_SIZE": 1},
    },
    "PERMISSION": "any",
    "MAX_REQUEST_BYTES": 65_536,
    "MAX_BYTES_PER_SOCKET": 4 * 1_048_576,
}
