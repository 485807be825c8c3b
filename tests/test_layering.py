"""Layers, one direction: exceptions <- batching <- runners <- Django glue <- serving.

Checked on the source (every import statement, including those inside functions), so a
lazy import cannot sneak a dependency in either.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tfbatch_django"

FORBIDDEN = {
    "exceptions.py": {"django", "channels", "tensorflow", "keras", "numpy", "tfbatch_django"},
    # The v2 tensor table: numpy only, shared by the v2 runner and the v2 server above it.
    "runners/v2_datatypes.py": {"django", "channels", "tensorflow", "keras", "tfbatch_django"},
    "batching": {"django", "channels", "tensorflow", "keras", "tfbatch_django.runners", "tfbatch_django.registry"},
    "runners": {"django", "channels", "tfbatch_django.registry", "tfbatch_django.conf", "tfbatch_django.api"},
    "serving": {"tensorflow", "keras", "tfbatch_django.runners.tensorflow", "tfbatch_django.runners.keras"},
}

#: Channels (and daphne) are optional: only the Channels front doors may import them.
CHANNELS_MODULES = {
    "serving/websocket.py",
    "serving/http_consumer.py",
    "serving/channels_base.py",
    "routing.py",
    "remote/calls.py",  # the channel layer's ChannelFull, for models served by workers (WORKER)
    "remote/server.py",
    "remote/lean.py",  # the same calls on the layer's Redis, raising the layer's ChannelFull
}


def imported_modules(path: Path, root: Path = PACKAGE) -> set[str]:
    tree = ast.parse(path.read_text())
    package = "tfbatch_django." + ".".join(path.relative_to(root).with_suffix("").parts)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
    return names


def violations(target: str, package: Path = PACKAGE) -> list[str]:
    root = package / target
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    found = []
    for path in files:
        for module in imported_modules(path, package):
            for banned in FORBIDDEN[target]:
                allowed_self = target.endswith(".py") and module == "__future__"
                if not allowed_self and (module == banned or module.startswith(banned + ".")):
                    found.append(f"{path.relative_to(package)} imports {module}")
    return found


def test_exceptions_import_nothing():
    assert violations("exceptions.py") == []


def test_v2_datatypes_import_only_numpy():
    assert violations("runners/v2_datatypes.py") == []


def test_batching_imports_neither_django_nor_tensorflow():
    assert violations("batching") == []


def test_runners_do_not_import_django():
    assert violations("runners") == []


def test_serving_uses_no_tensorflow():
    assert violations("serving") == []


def test_only_the_channels_front_doors_import_channels():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(PACKAGE))
        if relative in CHANNELS_MODULES:
            continue
        offenders += [
            f"{relative} imports {m}" for m in imported_modules(path) if m.split(".")[0] in {"channels", "daphne"}
        ]
    assert offenders == []


def test_the_checker_catches_a_violation(tmp_path):
    # The rule must be able to fail: a copy of the package with real violations planted,
    # direct and lazy, absolute and relative, is checked by the same function.
    copy = tmp_path / "tfbatch_django"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "static", "templates"))
    assert violations("batching", copy) == []
    scheduler = copy / "batching" / "scheduler.py"
    scheduler.write_text(
        scheduler.read_text()
        + "\n\ndef _planted() -> None:\n    from ..runners.tensorflow import SavedModelRunner  # noqa\n"
    )
    (copy / "batching" / "planted.py").write_text("import django.conf\nfrom tensorflow import constant\n")
    (copy / "exceptions.py").write_text((copy / "exceptions.py").read_text() + "\nimport numpy\n")
    assert sorted(violations("batching", copy)) == [
        "batching/planted.py imports django.conf",
        "batching/planted.py imports tensorflow",
        "batching/scheduler.py imports tfbatch_django.runners.tensorflow",
    ]
    assert violations("exceptions.py", copy) == ["exceptions.py imports numpy"]
