"""The house: which folder may import which, as data, checked on every run.

Layers point down only; the engine is handed its adapters through the ports and never picks
one; the command line reaches the store, the spool and the renderer only through the use
cases in ``app/``; third-party clients stay behind their adapter.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "faxgw"

#: Top-level part → the parts it may import (besides itself). ``testing`` (real test peers)
#: may import anything and is imported only by the demo and the tests.
ALLOWED: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    "fsutil": frozenset(),
    "tlsutil": frozenset({"domain"}),
    "redact": frozenset(),
    "config": frozenset({"domain"}),
    "ports": frozenset({"domain"}),
    "fax": frozenset({"domain", "config"}),
    "render": frozenset({"domain", "config", "fax", "ports", "fsutil"}),
    "store": frozenset({"domain", "ports", "fsutil"}),
    "auth": frozenset({"domain", "config", "ports", "fsutil"}),
    "transport": frozenset({"domain", "config", "ports", "tlsutil"}),
    "inbox": frozenset({"domain", "config", "ports", "tlsutil"}),
    "intake": frozenset({"domain", "config", "fax", "render", "ports", "fsutil"}),
    "confirm": frozenset({"domain", "config", "fax"}),
    "engine": frozenset({"domain", "config", "fax", "render", "intake", "ports", "confirm"}),
    "app": frozenset({"domain", "config", "ports", "fax", "render", "intake", "engine", "confirm",
                      "store", "auth", "transport", "fsutil", "inbox", "devices"}),
    "devices": frozenset({"domain", "config", "fax", "fsutil"}),
    "cli": frozenset({"app", "domain", "config", "fax", "fsutil", "redact", "testing", "web",
                      "devices"}),
    "web": frozenset({"app", "domain", "config", "fax", "fsutil", "redact"}),
    "__main__": frozenset({"cli"}),
    "__init__": frozenset(),
}

#: Third-party clients and the only parts that may use them.
CLIENTS: dict[str, frozenset[str]] = {
    "aiosmtplib": frozenset({"transport", "testing"}),
    "httpx": frozenset({"transport", "inbox", "testing"}),
    "aioimaplib": frozenset({"inbox", "testing"}),
    "aiosmtpd": frozenset({"devices", "testing"}),
    "msal": frozenset({"auth", "testing"}),
    "sqlite3": frozenset({"store", "cli"}),  # cli: one line for an error reaching main
    "psycopg": frozenset({"store"}),  # its errors leave the store as StoreError
    "psycopg_pool": frozenset({"store"}),
    "click": frozenset({"cli"}),
}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        part = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        yield part, path


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, as an absolute dotted name."""
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    here = list(relative.parts[:-1])  # the package the module is in
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "faxgw":
                yield from (f"faxgw.{alias.name}" for alias in node.names)
            else:
                yield module


def _edges() -> list[tuple[str, str, str]]:
    edges = []
    for part, path in _modules():
        for module in _imports(path):
            names = module.split(".")
            if names[0] == "faxgw" and len(names) > 1 and names[1] != part:
                edges.append((part, names[1], f"{path.relative_to(PACKAGE)} imports {module}"))
            elif names[0] in CLIENTS:
                edges.append((part, names[0], f"{path.relative_to(PACKAGE)} imports {module}"))
    return edges


def test_every_part_is_in_the_table() -> None:
    parts = {part for part, _ in _modules()} - {"testing", "samples"}
    assert parts <= set(ALLOWED), sorted(parts - set(ALLOWED))


def test_layers_point_down_only() -> None:
    wrong = [why for part, target, why in _edges()
             if part in ALLOWED and target not in CLIENTS and target not in ALLOWED[part]]
    assert wrong == []


def test_third_party_clients_stay_behind_their_adapter() -> None:
    wrong = [why for part, target, why in _edges()
             if target in CLIENTS and part not in CLIENTS[target]]
    assert wrong == []


def test_no_module_passes_400_lines() -> None:
    """One concern per module, each small: a module past 400 lines is asking to be split."""
    long = [(str(path.relative_to(PACKAGE)), n) for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400]
    assert long == []


def test_the_import_reader_sees_relative_and_absolute_imports() -> None:
    """So that the checks above can fail: the worker's imports are read as they are."""
    module = PACKAGE / "engine" / "worker.py"
    found = set(_imports(module))
    assert "faxgw.ports" in found and "faxgw.intake.register" in found
    assert not any(name.startswith("faxgw.transport") for name in found)
