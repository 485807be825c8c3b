"""The test settings with a model whose file is not there yet, for ``manage.py`` in a
subprocess: the database and static root come from the environment (a temporary folder)."""

import os

from tests.settings import *  # noqa: F403

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["TFBATCH_TEST_DB"]}}
STATIC_ROOT = os.environ["TFBATCH_TEST_STATIC_ROOT"]
TFBATCH = {"MODELS": {"later": {"PATH": os.environ["TFBATCH_TEST_MISSING_MODEL"]}}}
