"""The layering of delo/, derived from the source: every ``import`` (module level and inside functions; not under
``if TYPE_CHECKING:``) is an edge, and the graph must be acyclic and point down the layers of
docs/architecture.md. A new module gets a layer here or the test names it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "delo"

# Lowest first. A module may import its own layer or a lower one; the first matching prefix decides.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaves", ("delo.atomic", "delo.metric_keys", "delo.config.errors", "delo.config.section")),
    # what the config schema reads off the methods: names and their keys, pydantic only
    ("declarations", ("delo.methods.registry", "delo.methods.*.config")),
    ("config", ("delo.config",)),
    ("base", ("delo.runtime", "delo.folderlock", "delo.metrics", "delo.provenance")),
    ("data and ViLT", ("delo.data", "delo.vilt")),
    ("methods", ("delo.methods",)),
    ("runner", ("delo.train", "delo.evaluate", "delo.checkpoint", "delo.tblog")),
    ("sweeps", ("delo.sweep",)),
    (
        "ray seam",
        tuple(f"delo.sweep.{m}" for m in ("trainable", "searcher", "progress", "driver", "ray_state")),
    ),
    ("entry points", ("delo.cli", "delo.tools", "delo")),
]
RAY_SEAM = LAYERS[8][1]
#: what the layers above the methods may import of them: the builder, the contract, the heads, the registry
METHOD_SURFACE = ("delo.methods", "delo.methods.base", "delo.methods.heads", "delo.methods.registry")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _matches(module: str, pattern: str) -> bool:
    if "*" in pattern:
        head, tail = pattern.split(".*.")
        return module.startswith(head + ".") and module.endswith("." + tail)
    return module == pattern or module.startswith(pattern + ".")


def layer_of(module: str) -> int:
    # the most specific pattern wins (the Ray seam inside delo.sweep, declarations inside delo.methods)
    best, best_len = None, -1
    for rank, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if _matches(module, pattern) and len(pattern) > best_len:
                best, best_len = rank, len(pattern)
    if best is None:
        raise AssertionError(f"{module} has no layer in tests/unit/test_architecture.py")
    return best


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> set[str]:
    """Modules ``path`` imports (delo's and third-party, top-level names resolved to modules where they are)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_module = (ROOT.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    ROOT.parent / candidate.replace(".", "/")
                ).is_dir()
                found.add(candidate if is_module else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def graph() -> dict[str, set[str]]:
    return {
        module_name(p): {m for m in imports_of(p) if m == "delo" or m.startswith("delo.")} - {module_name(p)}
        for p in sorted(ROOT.rglob("*.py"))
    }


def test_every_module_has_a_layer():
    for module in graph():
        layer_of(module)


def test_imports_point_down_the_layers():
    wrong = []
    for module, targets in graph().items():
        for target in targets:
            if target == "delo":
                continue  # the package's lazy re-exports
            if layer_of(target) > layer_of(module):
                wrong.append(
                    f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
                )
    assert not wrong, "\n".join(sorted(wrong))


def test_above_the_methods_only_the_method_surface_is_imported():
    """The runner, sweeps and CLI build a method by name and talk to the contract; no method's own module."""
    methods = layer_of("delo.methods")
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        if layer_of(module) > methods and not module.startswith("delo.tools")
        for target in targets
        if target.startswith("delo.methods") and layer_of(target) == methods and target not in METHOD_SURFACE
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g.get(node, ())):
            if nxt not in g:
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            walk(node)


def test_ray_is_imported_only_in_the_ray_seam():
    wrong = [
        str(p.relative_to(ROOT.parent))
        for p in ROOT.rglob("*.py")
        if any(m == "ray" or m.startswith("ray.") for m in imports_of(p))
        and not any(_matches(module_name(p), s) for s in RAY_SEAM)
    ]
    assert not wrong


def test_method_names_are_listed_only_in_the_registry():
    """A module that spells two or more ``model.method`` names is a second list of methods."""
    from delo.methods.registry import METHOD_NAMES

    names = set(METHOD_NAMES)
    wrong = {}
    for p in ROOT.rglob("*.py"):
        if p.name == "registry.py" and p.parent.name == "methods":
            continue
        spelled = {
            n.value
            for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, ast.Constant) and n.value in names
        }
        if len(spelled) > 1:
            wrong[str(p.relative_to(ROOT.parent))] = sorted(spelled)
    assert not wrong


def test_the_architecture_test_sees_a_cycle_and_an_upward_import(tmp_path):
    """The checks above can fail: a planted upward import and cycle are found by the same machinery."""
    global ROOT
    fake = tmp_path / "delo"
    (fake / "vilt").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "vilt" / "__init__.py").write_text("")
    (fake / "vilt" / "bad.py").write_text("from delo.train import run_continual\n")
    (fake / "train.py").write_text("import delo.vilt.bad\n")
    saved, ROOT = ROOT, fake
    try:
        g = graph()
        assert g["delo.vilt.bad"] == {"delo.train"}
        assert layer_of("delo.train") > layer_of("delo.vilt.bad")
        with pytest.raises(pytest.fail.Exception, match="import cycle"):
            test_no_import_cycle()
    finally:
        ROOT = saved


def test_the_module_map_of_architecture_md_matches_the_tree():
    """docs/architecture.md's module map names every package and module of delo/, and nothing that is gone."""
    import re

    doc = (ROOT.parent / "docs" / "architecture.md").read_text()
    block = doc.split("## Module map\n```\n", 1)[1].split("```", 1)[0]
    packages = {p.name for p in ROOT.rglob("*") if p.is_dir() and (p / "__init__.py").exists()} - {"delo"}
    modules = {p.stem for p in ROOT.rglob("*.py") if p.stem != "__init__"}
    named_packages = set(re.findall(r"(\w+)/", block))
    named_modules = set(re.findall(r"(\w+)\.py", block)) | {
        w for w in re.findall(r"\b(\w+)\b", block) if w in modules
    }
    assert packages <= named_packages, sorted(packages - named_packages)
    assert modules <= named_modules, sorted(modules - named_modules)
    mentioned = set(re.findall(r"(\w+)\.py", block)) - {"__init__"}
    assert mentioned <= modules, sorted(mentioned - modules)
