"""The README documents every app setting the code reads."""

from __future__ import annotations

from orchestrations.settings import AcaSettings, AppSettings
from tests.conftest import PROJECT_ROOT


def test_readme_names_every_setting() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    fields = [*AppSettings.model_fields.values(), *AcaSettings.model_fields.values()]
    aliases = [str(field.validation_alias) for field in fields]

    missing = [alias for alias in aliases if f"`{alias}`" not in readme]

    assert missing == []
