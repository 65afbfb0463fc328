"""The azd hook scripts, run as azd runs them, against stand-ins for `az` and `azd` on PATH.

Azure cannot be reached here, so each stand-in records its arguments and answers as the real command would in
the case under test: the app not yet listing its blob trigger, a webhook handshake that fails before it
succeeds, an azd environment with or without the callback key.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.infra.bicep import read

# Answers by the number of calls so far of the same kind (counted in files next to the log).
FAKE_AZ = r"""#!/usr/bin/env bash
printf '%s\n' "az $*" >> "$FAKE_DIR/calls"
count() { n=$(( $(cat "$FAKE_DIR/$1" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$FAKE_DIR/$1"; echo "$n"; }
case "$*" in
  "functionapp function list"*)
    [ "$(count lists)" -gt "${FAKE_LISTS_BEFORE_READY:-0}" ] && printf '%s\n' "$FAKE_APP/other" "$FAKE_APP/on_upload"
    exit 0 ;;
  "deployment group create"*)
    if [ "$(count deployments)" -le "${FAKE_DEPLOY_FAILURES:-0}" ]; then
      echo "ERROR: Webhook validation handshake failed" >&2; exit 1
    fi
    exit 0 ;;
esac
exit 0
"""
FAKE_AZD = r"""#!/usr/bin/env bash
printf '%s\n' "azd $*" >> "$FAKE_DIR/calls"
store="$FAKE_DIR/azd-env"
case "$1 $2" in
  "env get-value")
    grep "^$3=" "$store" 2>/dev/null | cut -d= -f2- | grep . || { echo "ERROR: key '$3' not found" >&2; exit 1; } ;;
  "env set")
    grep -v "^$3=" "$store" > "$store.new" 2>/dev/null; echo "$3=$4" >> "$store.new"; mv "$store.new" "$store" ;;
esac
"""
OUTPUTS = {
    "AZURE_RESOURCE_GROUP": "rg-pacta-dev",
    "AZURE_STORAGE_ACCOUNT_NAME": "stabc123",
    "AZURE_FUNCTION_APP_NAME": "func-abc123",
    "AZURE_EVENTGRID_TOPIC_NAME": "evgt-abc123",
    "UPLOADS_CONTAINER": "uploads",
    "AZURE_CONTAINER_REGISTRY_NAME": "crabc123",
    "AZURE_CONTAINER_REGISTRY_ENDPOINT": "crabc123.azurecr.io",
    "ACA_JOB_NAME": "caj-runner-abc123",
}


@dataclass
class Hook:
    returncode: int
    output: str
    calls: list[str]


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("az", FAKE_AZ), ("azd", FAKE_AZD)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return tmp_path


def run_hook(fakes: Path, script: str, **env: str) -> Hook:
    environ = {
        "PATH": f"{fakes / 'bin'}:{os.environ['PATH']}", "HOME": str(fakes), "FAKE_DIR": str(fakes),
        "FAKE_APP": OUTPUTS["AZURE_FUNCTION_APP_NAME"], "EVENT_SUBSCRIPTION_PAUSE_SECONDS": "0", **OUTPUTS, **env,
    }
    result = subprocess.run(["bash", f"scripts/{script}"], cwd=PROJECT_ROOT, env=environ, capture_output=True,
                            text=True, timeout=60, check=False)
    calls_file = fakes / "calls"
    calls = calls_file.read_text().splitlines() if calls_file.exists() else []
    return Hook(result.returncode, result.stdout + result.stderr, calls)


def kinds(calls: list[str]) -> list[str]:
    return [" ".join(call.split()[:4]) for call in calls]


def test_the_subscription_waits_for_the_blob_trigger_then_is_deployed_once(fakes: Path) -> None:
    hook = run_hook(fakes, "azd-event-subscription.sh", FAKE_LISTS_BEFORE_READY="2")

    assert hook.returncode == 0, hook.output
    assert kinds(hook.calls) == ["az functionapp function list"] * 3 + ["az deployment group create"]
    assert hook.output.count("waiting for func-abc123 to list on_upload") == 2
    assert "uploads in uploads now reach the blob trigger" in hook.output


def test_the_deployment_passes_eventgrid_bicep_exactly_its_parameters(fakes: Path) -> None:
    hook = run_hook(fakes, "azd-event-subscription.sh")

    deploy = shlex.split(hook.calls[-1])
    assert deploy[deploy.index("--template-file") + 1] == "infra/app/eventgrid.bicep"
    given = dict(item.split("=", 1) for item in deploy[deploy.index("--parameters") + 1:] if "=" in item)
    template = read("app/eventgrid.bicep")
    declared = set(re.findall(r"^param (\w+) ", template, flags=re.M))
    required = {name for name in declared if not re.search(rf"^param {name} \w+ = ", template, flags=re.M)}
    assert required <= set(given) <= declared
    assert given == {"topicName": "evgt-abc123", "storageAccountName": "stabc123", "functionAppName": "func-abc123",
                     "blobTriggerFunctionName": "on_upload", "uploadsContainer": "uploads"}


def test_a_failed_webhook_handshake_is_tried_again(fakes: Path) -> None:
    hook = run_hook(fakes, "azd-event-subscription.sh", FAKE_DEPLOY_FAILURES="2")

    assert hook.returncode == 0, hook.output
    assert kinds(hook.calls).count("az deployment group create") == 3
    assert "attempt 2 of 3 failed" in hook.output


def test_the_hook_gives_up_saying_how_to_try_again(fakes: Path) -> None:
    hook = run_hook(fakes, "azd-event-subscription.sh", FAKE_DEPLOY_FAILURES="9")

    assert hook.returncode == 1
    assert kinds(hook.calls).count("az deployment group create") == 3
    assert "Webhook validation handshake failed" in hook.output
    assert "was not made in 3 attempts" in hook.output and "azd hooks run postdeploy" in hook.output


def test_an_app_without_the_blob_trigger_is_never_subscribed(fakes: Path) -> None:
    hook = run_hook(fakes, "azd-event-subscription.sh", FAKE_LISTS_BEFORE_READY="99",
                    EVENT_SUBSCRIPTION_READY_CHECKS="4")

    assert hook.returncode == 1
    assert "az deployment group create" not in kinds(hook.calls)
    assert "does not list the blob trigger on_upload after 4 checks: did the code deploy?" in hook.output


@pytest.mark.parametrize("script", ["azd-event-subscription.sh", "azd-build-runner.sh"])
def test_a_hook_outside_azd_names_the_output_it_lacks(fakes: Path, script: str) -> None:
    hook = run_hook(fakes, script, AZURE_RESOURCE_GROUP="")

    assert hook.returncode == 1
    assert "AZURE_RESOURCE_GROUP is not set (azd sets it from infra/main.bicep's outputs" in hook.output
    assert hook.calls == []


def test_the_callback_key_is_made_once_per_environment(fakes: Path) -> None:
    first = run_hook(fakes, "azd-callback-key.sh")
    stored = (fakes / "azd-env").read_text()
    second = run_hook(fakes, "azd-callback-key.sh")

    assert first.returncode == second.returncode == 0
    key = stored.strip().removeprefix("CALLBACK_TOKEN_KEY=")
    assert re.fullmatch(r"[A-Za-z0-9_-]{64}", key)
    assert "made CALLBACK_TOKEN_KEY" in first.output and "CALLBACK_TOKEN_KEY present" in second.output
    assert (fakes / "azd-env").read_text() == stored
    assert key not in first.output + second.output


def test_the_runner_image_is_built_in_the_registry_and_the_job_pointed_at_it(fakes: Path) -> None:
    hook = run_hook(fakes, "azd-build-runner.sh")

    assert hook.returncode == 0, hook.output
    build, update, remember = (shlex.split(call) for call in hook.calls)
    tag = build[build.index("--image") + 1].removeprefix("pacta-runner:")
    assert build[:3] == ["az", "acr", "build"] and build[build.index("--file") + 1] == "runner/Dockerfile"
    assert build[build.index("--registry") + 1] == "crabc123"
    assert update[:4] == ["az", "containerapp", "job", "update"]
    assert update[update.index("--name") + 1] == "caj-runner-abc123"
    assert update[update.index("--image") + 1] == f"crabc123.azurecr.io/pacta-runner:{tag}"
    assert remember == ["azd", "env", "set", "RUNNER_IMAGE_NAME", f"crabc123.azurecr.io/pacta-runner:{tag}"]
