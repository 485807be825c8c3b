from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo's page and its model-training command (not part of the library)."""

    name = "demo_project.demo"
    label = "tfbatch_demo"
    verbose_name = "tfbatch demo"
