"""The registry of ``--method`` names: one :class:`~recbole_foster.methods.base.Method` per name.

``METHODS`` (name -> method) is what the command line, ``--help``, the benchmark scripts and the
docs read. The built-in methods are registered here, one file each; a method of another
package is added with :func:`register_method`, published under the entry point group
``recbole_foster.methods``, or named on the command line as ``--method=package.module:ClassName``
(:func:`get_method` imports it). docs/extending.md shows how to write one.
"""

import importlib
from importlib.metadata import entry_points

from recbole_foster.diet.method import Diet
from recbole_foster.methods.auto import Auto
from recbole_foster.methods.base import MODEL_SUPPORT, SELF_CONTAINED, TEACHER_ASSISTED, Method
from recbole_foster.methods.distillation import TD3, Foster
from recbole_foster.methods.full import Full
from recbole_foster.methods.generation import GenerateKD
from recbole_foster.methods.popularity import Popularity
from recbole_foster.methods.saved_set import Eval
from recbole_foster.methods.selection import DEALRec, GORACS, KCenter, KCenterKD, Random, RandomKD

__all__ = ["ENTRY_POINT_GROUP", "METHODS", "MODEL_SUPPORT", "Method", "SELF_CONTAINED", "TEACHER_ASSISTED",
           "get_method", "register_method"]

ENTRY_POINT_GROUP = "recbole_foster.methods"
METHODS = {}


def register_method(method):
    """Register a :class:`Method` subclass (or instance) under its ``name``; returns it, so it can
    decorate a class. A later registration of a name replaces the earlier one."""
    instance = method() if isinstance(method, type) else method
    if not isinstance(instance, Method) or not instance.name or not instance.label:
        raise TypeError(f"{method!r} is not a recbole_foster Method with a name and a label.")
    METHODS[instance.name] = instance
    return method


for _method in (Full, Random, RandomKD, KCenter, DEALRec, GORACS, KCenterKD, GenerateKD, TD3, Foster, Diet, Eval,
                Popularity, Auto):
    register_method(_method)


def _load_entry_points():
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name not in METHODS:
            register_method(point.load())


def get_method(name):
    """The method ``--method=name`` names: a registered name, one published under the entry point
    group, or ``package.module:ClassName`` (imported and registered under the class's ``name``).
    Raises ValueError saying what is wrong."""
    if name in METHODS:
        return METHODS[name]
    if ":" in name:
        module_name, _, class_name = name.partition(":")
        try:
            method = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"--method={name}: cannot import {class_name} from {module_name} ({error}).") from None
        try:
            register_method(method)
        except TypeError as error:
            raise ValueError(f"--method={name}: {error}") from None
        return METHODS[(method() if isinstance(method, type) else method).name]
    _load_entry_points()
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}, "
                         "or name your own as --method=package.module:ClassName.")
    return METHODS[name]
