"""The native module's stub lists exactly what the module exports, with matching signatures."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import fastcheckpoint
from fastcheckpoint import _native

STUB = Path(fastcheckpoint.__file__).with_name("_native.pyi")


def stub_tree() -> dict[str, set[str] | None]:
    out: dict[str, set[str] | None] = {}
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        elif isinstance(node, ast.FunctionDef):
            out[node.name] = None
        elif isinstance(node, ast.AnnAssign):
            out[node.target.id] = None
    return out


def test_stub_names_match_module() -> None:
    public = {n for n in dir(_native) if not n.startswith("_")}
    assert set(stub_tree()) == public


def test_stub_methods_exist_with_same_parameters() -> None:
    for name, methods in stub_tree().items():
        obj = getattr(_native, name)
        for m in methods or ():
            assert hasattr(obj, m), f"{name}.{m} missing from the module"
            if m.startswith("__") or not callable(getattr(obj, m)):
                continue
            sig = inspect.signature(getattr(obj, m))
            stub_fn = next(
                f
                for c in ast.parse(STUB.read_text()).body
                if isinstance(c, ast.ClassDef) and c.name == name
                for f in c.body
                if isinstance(f, ast.FunctionDef) and f.name == m
            )
            stub_params = [a.arg for a in (*stub_fn.args.args, *stub_fn.args.kwonlyargs) if a.arg != "self"]
            assert stub_params == [p for p in sig.parameters if p != "self"], f"{name}.{m}"
