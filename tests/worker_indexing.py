"""Index the app with the Python worker's own code (azure-functions-runtime), as `func start` does.

The worker package declares Python >= 3.13 but is pure Python; `scripts/bootstrap.sh` unpacks its
wheel into `.local/worker` without installing it, and these helpers put it on `sys.path`.
"""

from __future__ import annotations

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
    if str(WORKER_DIR) not in sys.path:
        sys.path.insert(0, str(WORKER_DIR))
    from azure_functions_runtime.bindings import meta
    from azure_functions_runtime.functions import Registry
    from azure_functions_runtime.loader import index_function_app
    from azure_functions_runtime.utils.validators import validate_script_file_name

    script_file_name = os.environ.get("PYTHON_SCRIPT_FILE_NAME", "function_app.py")
    validate_script_file_name(script_file_name)
    function_path = app_dir / script_file_name
    if not function_path.exists():
        raise FileNotFoundError(f"{function_path} does not exist: the worker falls back to legacy indexing")
    meta.load_binding_registry()
    functions = index_function_app(str(function_path))
    registry = Registry()
    for function in functions:
        registry.add_indexed_function(function=function, protos=PROTOS)
    return list(functions)
