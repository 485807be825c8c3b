"""Settings of the demo project: SQLite, daphne, channels and tfbatch_django."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-secret-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "tfbatch_django",
    "demo_project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "demo_project.wsgi.application"
ASGI_APPLICATION = "demo_project.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "var" / "demo.sqlite3",
    }
}

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The demo model: trained by `manage.py tfbatch_demo_model` (the Makefile's demo target
# runs it when the model is missing) into a git-ignored folder. The end-to-end tests
# point TFBATCH_DEMO_MODEL_DIR at a model they trained into a temporary folder.
DEMO_MODEL_DIR = Path(os.environ.get("TFBATCH_DEMO_MODEL_DIR") or BASE_DIR / "var" / "models" / "digits")

TFBATCH = {
    "MODELS": {
        "digits": {
            "PATH": DEMO_MODEL_DIR,
            "MAX_BATCH_SIZE": 64,
            "MAX_LATENCY_MS": 5,
            "ALLOWED_BATCH_SIZES": [1, 8, 16, 32, 64],
            "MAX_QUEUE_SIZE": 1024,
            "TIMEOUT_MS": 10_000,
        },
    },
    # The library's default lets only authenticated users predict. The demo page is for
    # anyone who opens it on this machine, so the demo opts in to anonymous predictions.
    # A real project keeps the default, or names its own check: "myapp.perms.can_predict".
    "PERMISSION": "any",
    # The page's "burst" sends up to 256 requests at once over its one WebSocket.
    "MAX_IN_FLIGHT_PER_SOCKET": 256,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # propagate=False: daphne also logs through the root logger, which would print twice.
    "loggers": {"tfbatch_django": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
