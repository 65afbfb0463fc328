"""The docs name every setting the code reads; the README opens with the two commands a newcomer runs."""

from __future__ import annotations

import pytest
from pydantic_settings import BaseSettings

from orchestrations import telemetry
from orchestrations.settings import AcaSettings, AppSettings
from tests.conftest import PROJECT_ROOT


@pytest.mark.parametrize(
    ("settings", "page"), [(AppSettings, "settings.md"), (AcaSettings, "azure-container-apps.md")],
    ids=["app settings", "aca settings"],
)
def test_every_setting_is_documented_on_its_page(settings: type[BaseSettings], page: str) -> None:
    text = (PROJECT_ROOT / "docs" / page).read_text()
    aliases = [str(field.validation_alias) for field in settings.model_fields.values()]

    missing = [alias for alias in aliases if f"`{alias}`" not in text]

    assert missing == []


def test_every_telemetry_setting_read_is_documented() -> None:
    text = (PROJECT_ROOT / "docs" / "settings.md").read_text()

    missing = [name for name in telemetry.SETTINGS_READ if f"`{name}`" not in text]

    assert missing == []


def test_the_readme_opens_with_the_main_job_and_the_tests() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()

    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]

    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]
