"""The layers import in one direction only (README, "Development")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tfbatch_django"
CHANNELS_MODULES = {"serving/websocket.py", "serving/http_consumer.py", "serving/channels_base.py", "routing.py"}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def modules(folder: str = "") -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize("path", modules("batching"), ids=lambda p: p.name)
def test_the_batching_core_imports_neither_django_nor_frameworks(path):
    assert not imports(path) & {"django", "channels", "tensorflow", "keras"}


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_channels_front_doors_import_channels(path):
    if str(path.relative_to(PACKAGE)) not in CHANNELS_MODULES:
        assert "channels" not in imports(path) and "daphne" not in imports(path)


@pytest.mark.parametrize("path", modules("serving"), ids=lambda p: p.name)
def test_the_serving_layer_uses_no_tensorflow(path):
    assert not imports(path) & {"tensorflow", "keras"}
