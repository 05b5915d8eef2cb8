"""No import cycle between the package's modules, lazy (function-level) imports included.

``import`` statements count, and so does a string that names a package module (``"recbole_foster.x"``
or ``"recbole_foster.x:attr"``, resolved by ``importlib`` at run time): a registry that names
modules by string would otherwise hide a cycle. A package ``__init__`` importing its submodules
is an edge like any other, and so is a submodule importing from its own package's ``__init__``.
"""

import ast
import importlib.util
import os
import pkgutil

import recbole_foster

PACKAGE = recbole_foster.__name__


def package_modules():
    """{module name: source path} for the package, its subpackages (as ``__init__``) and modules."""
    modules = {PACKAGE: recbole_foster.__file__}
    for info in pkgutil.walk_packages(recbole_foster.__path__, prefix=PACKAGE + "."):
        spec = importlib.util.find_spec(info.name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            modules[info.name] = spec.origin
    return modules


def _absolute(node, module, is_package):
    """The module a ``from ... import`` names, with relative imports resolved."""
    if not node.level:
        return node.module
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(module, path, modules):
    """Package modules that ``module`` imports anywhere in its source (module or function level)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    is_package = os.path.basename(path) == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, is_package)
            # ``from a.b import c``: the module a.b.c when there is one, else (a name in) a.b
            names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                     for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value.partition(":")[0] in modules:
            names = [node.value.partition(":")[0]]  # a module named by string
        else:
            continue
        for name in names:
            # ``import a.b.c`` names a.b.c; a name that is not a module is in its nearest module
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph():
    modules = package_modules()
    return {module: imported_modules(module, path, modules) for module, path in modules.items()}


def find_cycle(graph):
    """One cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_module_level_lazy_package_and_string_imports():
    graph = import_graph()
    assert "recbole_foster.run" in graph and "recbole_foster.methods.selection" in graph
    assert "recbole_foster.methods" in graph["recbole_foster.run"]
    assert "recbole_foster.labels" in graph["recbole_foster.config"]  # inside a function
    assert "recbole_foster.compat" in graph["recbole_foster"]  # from recbole_foster import compat
    assert "recbole_foster.coreset.dealrec" in graph["recbole_foster.coreset"]  # __init__ -> submodule
    assert "recbole_foster.methods.selection" in graph["recbole_foster.methods"]  # the registry imports its methods
    assert "recbole_foster.methods.distillation" in graph["recbole_foster.validation"]  # named by string (CHOICES)


def test_a_module_named_by_string_is_an_edge(tmp_path):
    source = tmp_path / "m.py"
    source.write_text('RUNNER = "recbole_foster.run:main"\nNOTE = "recbole_foster.run is the pipeline"\n')
    modules = package_modules()
    assert imported_modules("recbole_foster.x", str(source), modules) == {"recbole_foster.run"}


def test_methods_are_classes_not_runner_strings():
    from recbole_foster.methods import METHODS, Method

    for method in METHODS.values():
        assert isinstance(method, Method) and not hasattr(method, "runner"), method.name


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
