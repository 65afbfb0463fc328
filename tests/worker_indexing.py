"""Index the app with the Python worker's own code (azure-functions-runtime), as `func start` does.

The worker package declares Python >= 3.13 but is pure Python; `scripts/bootstrap.sh` unpacks its
wheel into `.local/worker` without installing it, and these helpers put it on `sys.path`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

WORKER_DIR = Path(__file__).resolve().parent.parent / ".local" / "worker"

# The two gRPC enums the registry reads (FunctionRpc.proto: BindingInfo.Direction and .DataType).
PROTOS = SimpleNamespace(
    BindingInfo=SimpleNamespace(**{"in": 0, "out": 1, "inout": 2, "undefined": 0, "string": 1, "binary": 2,
                                   "stream": 3})
)


def worker_available() -> bool:
    return (WORKER_DIR / "azure_functions_runtime" / "loader.py").exists()


def index_like_the_worker(app_dir: Path) -> list[Any]:
    """The worker's `load_function_metadata`: file-name check, existence gate, import, registry check."""
    return [function for function, _ in _index(app_dir)]


def raw_bindings_like_the_worker(app_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The bindings the worker sends the host for each function (`RpcFunctionMetadata.raw_bindings`):
    for a function with an SDK-type (deferred) binding they come from azurefunctions-extensions-base and
    carry `properties.SupportsDeferredBinding`, which makes the host send a reference instead of content."""
    indexed = _index(app_dir)
    from azure_functions_runtime.loader import get_fx_raw_bindings

    return {
        function.get_function_name(): [json.loads(raw) for raw in get_fx_raw_bindings(function, info)[0]]
        for function, info in indexed
    }


def _index(app_dir: Path) -> list[tuple[Any, Any]]:
    if str(WORKER_DIR) not in sys.path:
        sys.path.insert(0, str(WORKER_DIR))
    from azure_functions_runtime.bindings import meta
    from azure_functions_runtime.functions import Registry
    from azure_functions_runtime.loader import index_function_app
    from azure_functions_runtime.utils.validators import validate_script_file_name

    # A worker process looks for the extensions' registry once; each call here is a fresh process.
    meta.DEFERRED_BINDING_REGISTRY = None
    meta._DEFERRED_BINDING_REGISTRY_LOADED = False

    script_file_name = os.environ.get("PYTHON_SCRIPT_FILE_NAME", "function_app.py")
    validate_script_file_name(script_file_name)
    function_path = app_dir / script_file_name
    if not function_path.exists():
        raise FileNotFoundError(f"{function_path} does not exist: the worker falls back to legacy indexing")
    meta.load_binding_registry()
    functions = index_function_app(str(function_path))
    registry = Registry()
    return [(function, registry.add_indexed_function(function=function, protos=PROTOS)) for function in functions]
