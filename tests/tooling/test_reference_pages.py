"""docs/reference/settings.md and docs/reference/cli.md are generated from the code
(service/cli/reference.py): the committed pages must be what the code generates now, so a
new setting, option or exit code cannot go undocumented. .env.example lists every setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.cli import reference
from service.cli.exit_codes import EXIT_CODES
from service.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# docker-compose.yml's own variables, kept in .env.example for compose's interpolation.
COMPOSE_ONLY = {"CONSUMER_HTTP_BIND", "CONSUMER_HTTP_PORT"}


@pytest.mark.parametrize("page", sorted(reference.pages()), ids=str)
def test_the_committed_page_is_what_the_code_generates(page: Path) -> None:
    committed = (ROOT / page).read_text("utf-8") if (ROOT / page).exists() else ""
    assert committed == reference.pages()[page], (
        f"{page} differs from the code; regenerate it with `{reference.REGENERATE}` and commit it"
    )


def test_the_settings_page_lists_every_setting_with_its_description() -> None:
    page = reference.settings_page()
    for name, field in Settings.model_fields.items():
        assert f"| `{name.upper()}` |" in page, name
        assert field.description and field.description.replace("|", "\\|") in page, name


def test_the_cli_page_documents_every_command_and_exit_code() -> None:
    page = reference.cli_page()
    listed = [command for command, _, _ in reference.commands()]
    assert {"migrate", "run", "show", "lag", "dead-letters", "dead-letters replay"} <= set(listed)
    for command, parser, _ in reference.commands():
        assert f"### `{command}`" in page
        assert parser.description, f"give `{command}` a description= (it heads its section)"
    for code in EXIT_CODES:
        assert f"| {int(code)} |" in page


def test_the_generator_is_independent_of_the_terminal_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "30")
    narrow = reference.cli_page()
    monkeypatch.setenv("COLUMNS", "300")
    assert reference.cli_page() == narrow


def test_env_example_lists_every_setting() -> None:
    example = (ROOT / ".env.example").read_text("utf-8")
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.MULTILINE)) - COMPOSE_ONLY
    assert listed == {name.upper() for name in Settings.model_fields}
