"""The registries are the only places that know method and label-storage names.

A new method or label storage is one file (docs/extending.md). That only holds while no other
module branches on a method's or a storage's name: each such ``==`` / ``in`` test is a place a
contributor would have to edit. This check reads every module's syntax tree and counts them.
"""

import ast
import os

import recbole_foster
from recbole_foster.labels import storage_names
from recbole_foster.methods import METHODS

PACKAGE_DIR = os.path.dirname(recbole_foster.__file__)
# the registries and the classes themselves may name what they register
OWNERS = {"storage": [os.path.join(PACKAGE_DIR, "labels")],
          "method": [os.path.join(PACKAGE_DIR, "methods", "__init__.py"), os.path.join(PACKAGE_DIR, "methods", "base.py")]}


def _strings(node):
    """The string constants a comparison operand holds (itself, or the items of a tuple/list/set)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {s for element in node.elts for s in _strings(element)}
    return set()


def name_branches(source, kind, names):
    """``(line, code)`` of every comparison between an expression whose text mentions ``kind``
    (``config["label_storage"]``, ``storage``, ``method.name``...) and one of ``names``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        mentions = any(kind in ast.unparse(operand).lower() for operand in operands if not _strings(operand))
        if mentions and any(_strings(operand) & names for operand in operands):
            found.append((node.lineno, ast.unparse(node)))
    return found


def branches_outside_owners(kind, names):
    found = []
    for folder, _, files in os.walk(PACKAGE_DIR):
        for file in files:
            path = os.path.join(folder, file)
            if not file.endswith(".py") or any(path.startswith(owner) for owner in OWNERS[kind]):
                continue
            with open(path) as f:
                found += [(os.path.relpath(path, PACKAGE_DIR), *hit) for hit in name_branches(f.read(), kind, names)]
    return found


def test_the_check_finds_the_branches_it_counts():
    source = ('if config["label_storage"] == "topk": pass\n'
              'if storage.name in ("teacher", "dense"): pass\n'
              'if config["method"] != "foster": pass\n'
              'if config["foster_init"] == "random": pass\n')  # not a method name test: another key
    assert [line for line, _ in name_branches(source, "storage", {"topk", "teacher", "dense"})] == [1, 2]
    assert [line for line, _ in name_branches(source, "method", {"foster", "random"})] == [3]


def test_no_label_storage_name_is_branched_on_outside_recbole_foster_labels():
    assert branches_outside_owners("storage", set(storage_names(selectable=False))) == []


def test_no_method_name_is_branched_on_outside_the_method_registry_and_classes():
    assert branches_outside_owners("method", set(METHODS)) == []
