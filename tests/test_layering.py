"""The rooms' import rules (docs/ARCHITECTURE.md): the search substrate imports no policy, export
imports nothing of the API, the IR imports neither; checked on the source, so a function-level
import counts too."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fxprune"


def imports_of(folder: str) -> set[tuple[str, str]]:
    """(file, imported module relative to fxprune) for every import in fxprune/<folder>/."""
    out = set()
    for path in (PKG / folder).rglob("*.py"):
        rel_pkg = path.relative_to(PKG).with_suffix("").parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = list(rel_pkg[:len(rel_pkg) - node.level + 1])
                    mod = ".".join(base + ([node.module] if node.module else []))
                    names = [mod] if node.module else [f"{mod}.{a.name}" if mod else a.name for a in node.names]
                else:
                    names = [node.module.removeprefix("fxprune.")] if (node.module or "").startswith("fxprune") else []
                out.update((path.name, n) for n in names)
            elif isinstance(node, ast.Import):
                out.update((path.name, a.name.removeprefix("fxprune.")) for a in node.names
                           if a.name.startswith("fxprune"))
    return out


@pytest.mark.parametrize("room, forbidden", [
    ("search", ("policies", "api")),
    ("export", ("api", "policies", "search")),
    ("ir", ("policies", "search", "api", "export", "passes")),
    ("passes", ("policies", "search", "api", "export")),
])
def test_rooms_do_not_import_upwards(room, forbidden):
    bad = sorted((f, m) for f, m in imports_of(room) if m.split(".")[0] in forbidden)
    assert not bad, f"{room}/ imports {bad}"


def test_the_checker_sees_imports():
    assert ("evaluate.py", "search.config") in imports_of("search")
    assert any(m.startswith("ir") for _, m in imports_of("export"))
