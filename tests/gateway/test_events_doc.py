"""docs/events.md is generated (`pitcrew events-doc`) from the catalogues, so it cannot drift from the code."""

from __future__ import annotations

from typer.testing import CliRunner

from pitcrew.cli import app
from pitcrew.eventsdoc import OUTPUT, catalogues, render
from tests.gateway.upstream import CATALOGUES


def test_docs_events_md_is_what_the_command_renders():
    assert OUTPUT.read_text() == render(), "docs/events.md is out of date: run `pitcrew events-doc`"


def test_the_command_writes_and_checks_the_file(tmp_path):
    target = tmp_path / "events.md"
    runner = CliRunner()
    assert runner.invoke(app, ["events-doc", "--output", str(target), "--check"]).exit_code == 1
    assert runner.invoke(app, ["events-doc", "--output", str(target)]).exit_code == 0
    assert target.read_text() == render()
    result = runner.invoke(app, ["events-doc", "--output", str(target), "--check"])
    assert result.exit_code == 0, result.output
    target.write_text(target.read_text() + "edited by hand\n")
    assert runner.invoke(app, ["events-doc", "--output", str(target), "--check"]).exit_code == 1


def test_every_service_catalogue_found_is_rendered():
    text = render()
    for catalogue in catalogues():
        for spec in catalogue.publishes:
            assert f"### `{spec.subject}`" in text
    assert "## Webhooks the gateway translates (REST, not events)" in text


def test_a_channel_is_rendered_with_its_stream_publisher_consumers_and_fields():
    text = render(list(CATALOGUES.values()))
    section = text[text.index("### `budget.thing.happened`") : text.index("### `registry.tool.added`")]
    assert "A thing happened in the budget" in section
    assert "Stream `BUDGET`, published by **budget**, schema version 1" in section
    assert "Consumed by: kpi" in section
    assert "| `thing_id` | string | yes | The thing |" in section
    assert "| `region` | string or null | no |  |" in section
    assert "- `budget.>` (schema versions 1): Every budget event becomes measurements" in text
