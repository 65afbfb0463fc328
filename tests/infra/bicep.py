"""Reading the Bicep templates offline, for the tests that check them against the app.

Plain text, no Bicep compiler (it cannot be had here): the tools that need their own packages (tree-sitter,
checkov) run in `.local/infra-venv` (scripts/infra-venv.sh), by subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
INFRA = PROJECT_ROOT / "infra"
PARSE_SCRIPT = Path(__file__).resolve().parent / "parse_bicep.py"


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def read(relative: str) -> str:
    return (INFRA / relative).read_text(encoding="utf-8")


def block(text: str, opening: str) -> str:
    """The text of the first `{ ... }` or `[ ... ]` after `opening`, brackets included."""
    start = text.index(opening) + len(opening)
    first = min(i for i in (text.find("{", start), text.find("[", start)) if i >= 0)
    depth = 0
    for index in range(first, len(text)):
        char = text[index]
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return text[first : index + 1]
    raise ValueError(f"unbalanced brackets after {opening!r}")


@dataclass(frozen=True)
class Value:
    """One property's value as written: a plain string literal, or an expression (interpolation included)."""

    source: str

    @property
    def literal(self) -> str | None:
        match = re.fullmatch(r"'([^']*)'", self.source)
        return match.group(1) if match and "${" not in self.source else None


def object_properties(text: str, opening: str) -> dict[str, Value]:
    """The top-level `key: value` pairs of the object that starts at `opening` (one pair a line)."""
    body = block(text, opening)
    properties: dict[str, Value] = {}
    depth = 0
    for line in body.splitlines()[1:-1]:
        stripped = line.strip()
        if depth == 0 and stripped and not stripped.startswith("//"):
            key, _, value = stripped.partition(":")
            properties[key.strip().strip("'")] = Value(value.strip())
        depth += line.count("{") + line.count("[") - line.count("}") - line.count("]")
    return properties


def string_var(text: str, name: str) -> str:
    match = re.search(rf"^var {name} = '([^']*)'$", text, flags=re.M)
    assert match, f"no `var {name} = '...'`"
    return match.group(1)


@dataclass(frozen=True)
class RoleGrant:
    """A role assignment as written: its roles (a built-in role's GUID, resolved through `roles.<name>` or a
    variable, or `custom:<symbolic name>` for a role defined in the same file), the principal parameter and the
    scope's symbolic name (`inputContainer` for `inputContainer[index]`)."""

    file: str
    role_ids: tuple[str, ...]
    principal: str
    scope: str


@dataclass(frozen=True)
class CustomRole:
    """A role definition in the templates: its permission lists, each resolved from the `var` it names."""

    file: str
    name: str
    actions: tuple[str, ...]
    data_actions: tuple[str, ...]
    assignable_scopes: str


def _string_list(text: str, name: str) -> tuple[str, ...]:
    """A `var name = [ 'a' // why ... ]` list of string literals, or an inline `[]`."""
    if name == "[]":
        return ()
    items = []
    for line in block(text, f"var {name} = ").splitlines()[1:-1]:
        match = re.fullmatch(r"\s*'([^']+)'(?:\s*//.*)?", line)
        assert match, f"var {name}: {line.strip()!r} is not a string literal"
        items.append(match.group(1))
    return tuple(items)


def custom_roles() -> dict[str, CustomRole]:
    roles = {}
    for path in bicep_files():
        text = path.read_text(encoding="utf-8")
        definitions = r"^resource (\w+) 'Microsoft.Authorization/roleDefinitions@[^']+' = "
        for match in re.finditer(definitions, text, flags=re.M):
            body = block(text, match.group(0))
            fields = {key: re.search(rf"^\s*{key}: (\S+)$", body, flags=re.M) for key in ("actions", "dataActions")}
            assert all(fields.values()), f"{path.name}: role {match.group(1)} without actions and dataActions"
            for key in ("notActions", "notDataActions"):
                assert re.search(rf"^\s*{key}: \[\]$", body, flags=re.M), f"{path.name}: {key} must be []"
            scopes = block(body, "assignableScopes: ")
            roles[match.group(1)] = CustomRole(
                path.name,
                match.group(1),
                _string_list(text, fields["actions"].group(1)),  # type: ignore[union-attr]
                _string_list(text, fields["dataActions"].group(1)),  # type: ignore[union-attr]
                " ".join(scopes.split()),
            )
    return roles


def role_grants() -> list[RoleGrant]:
    grants = []
    for path in bicep_files():
        text = path.read_text(encoding="utf-8")
        guids = dict(re.findall(r"^\s*(?:var )?(\w+)(?: =|:) '([0-9a-f-]{36})'$", text, flags=re.M))
        lists: dict[str, list[str]] = {}
        for opening, name in re.findall(r"^(var (\w+) = (?:empty\(\w+\) \? \[\] : )?)\[$", text, flags=re.M):
            items = [item.strip().removeprefix("roles.") for item in block(text, opening).splitlines()[1:-1]]
            if all(item in guids for item in items):  # a list of roles, not of anything else
                lists[name] = [guids[item] for item in items]
        for match in re.finditer(r"^resource \w+ 'Microsoft.Authorization/roleAssignments@[^']+' = ", text, flags=re.M):
            body = block(text, match.group(0))
            loop = re.match(r"\[for role in (\w+):", body)
            role = re.search(r"roleDefinitionId: subscriptionResourceId\('Microsoft.Authorization/roleDefinitions', "
                             r"([\w.]+)\)$", body, flags=re.M)
            assert role, f"{path.name}: a role assignment without subscriptionResourceId(roleDefinitions, ...)"
            if loop:
                role_ids = tuple(lists[loop.group(1)])
            elif role.group(1).endswith(".name"):  # a role defined in the templates
                role_ids = (f"custom:{role.group(1).removesuffix('.name')}",)
            else:
                role_ids = (guids[role.group(1).removeprefix("roles.")],)
            principal = re.search(r"principalId: (\w+)", body)
            scope = re.search(r"scope: (\w+)", body)
            assert principal and scope, f"{path.name}: a role assignment without principalId or scope"
            name = re.search(r"name: guid\(([^)]*)\)", body)
            assert name, f"{path.name}: a role assignment whose name is not a deterministic guid(...)"
            grants.append(RoleGrant(path.name, role_ids, principal.group(1), scope.group(1)))
    return grants


def infra_python() -> Path | str:
    """The infra venv's python (made by scripts/infra-venv.sh if missing), or the reason it cannot be had."""
    try:
        result = subprocess.run(
            ["bash", str(PROJECT_ROOT / "scripts" / "infra-venv.sh")], cwd=PROJECT_ROOT, capture_output=True,
            text=True, timeout=600, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scripts/infra-venv.sh could not run: {exc}"
    if result.returncode != 0:
        return f"scripts/infra-venv.sh failed: {result.stderr.strip().splitlines()[-1:]}"
    return PROJECT_ROOT / result.stdout.strip().splitlines()[-1]


def parse_errors(python: Path, files: list[Path]) -> dict[str, list[str]]:
    """Each file's tree-sitter-bicep error and missing nodes (`line:column text`), by the infra venv's python."""
    result = subprocess.run(
        [str(python), str(PARSE_SCRIPT), *map(str, files)], capture_output=True, text=True, timeout=120, check=True,
    )
    errors: dict[str, list[str]] = json.loads(result.stdout)
    return errors


def checkov(python: Path, directory: Path) -> dict[str, object]:
    """checkov's Bicep checks on a directory, as its JSON report (offline: its platform call fails and it goes on)."""
    env = os.environ | {"BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(
        [str(python.parent / "checkov"), "-d", str(directory), "--framework", "bicep", "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )
    assert result.returncode in (0, 1), f"checkov exited {result.returncode}: {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    if isinstance(report, list):  # one report per framework; with no resources at all, a bare summary
        report = report[0]
    assert isinstance(report, dict)
    return report
