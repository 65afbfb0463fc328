"""The Python worker's entry module (app setting PYTHON_SCRIPT_FILE_NAME=entry.py).

The worker imports the file it names and looks for one top-level FunctionRegister. The app itself
lives in the `function_app` package; a `function_app.py` beside that package would be shadowed by it.
"""

from function_app import app

__all__ = ["app"]
