"""azure.yaml, main.parameters.json and the hook scripts agree with infra/main.bicep."""

from __future__ import annotations

import json
import re

from tests.conftest import PROJECT_ROOT
from tests.infra.bicep import read

MAIN = read("main.bicep")
OUTPUTS = set(re.findall(r"^output (\w+) ", MAIN, flags=re.M))
AZURE_YAML = (PROJECT_ROOT / "azure.yaml").read_text(encoding="utf-8")


def test_every_parameter_without_a_default_comes_from_the_azd_environment() -> None:
    parameters = json.loads((PROJECT_ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    declared = dict(re.findall(r"^param (\w+) \w+( = .*)?$", MAIN, flags=re.M))
    required = {name for name, default in declared.items() if not default}
    assert required <= set(parameters)
    assert set(parameters) <= set(declared)
    assert parameters["callbackTokenKey"]["value"] == "${CALLBACK_TOKEN_KEY}"
    assert re.search(r"@secure\(\)\n@description\([^\n]*\)\nparam callbackTokenKey string\n", MAIN)


def test_the_hooks_exist_and_read_only_what_main_bicep_outputs() -> None:
    hooks = re.findall(r"run: bash (scripts/[\w-]+\.sh)", AZURE_YAML)
    assert hooks == ["scripts/azd-callback-key.sh", "scripts/azd-build-runner.sh", "scripts/azd-event-subscription.sh"]
    checked = set()
    for hook in hooks:
        script = (PROJECT_ROOT / hook).read_text(encoding="utf-8")
        assert script.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in script
        for names in re.findall(r"for name in ([^;]+); do", script):
            checked |= set(names.replace("\\\n", " ").split())
    assert len(checked) >= 7 and checked <= OUTPUTS, checked - OUTPUTS
    build = (PROJECT_ROOT / "scripts" / "azd-build-runner.sh").read_text(encoding="utf-8")
    assert "az acr build" in build and "--file runner/Dockerfile" in build and "az containerapp job update" in build


def test_the_function_service_is_the_app_that_main_bicep_tags() -> None:
    service = re.search(r"^services:\n  (\w+):\n((?:    .*\n)+)", AZURE_YAML, flags=re.M)
    assert service and "host: function" in service.group(2) and "language: python" in service.group(2)
    assert f"'azd-service-name': '{service.group(1)}'" in MAIN
