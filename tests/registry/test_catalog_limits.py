"""Bounds of a catalogue import: nesting depth, body size, copied fields, and a big import's statements."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import event, select

from services.registry import catalog, schemas
from tests.harness import assert_problem, fields_of
from tests.registry.test_catalog import YAML, counts

ROOT = Path(__file__).resolve().parents[2]


# --- nesting depth: libyaml's constructor recurses in C and overflows the stack (SIGSEGV) ------------


@pytest.mark.db
@pytest.mark.parametrize(
    "nested",
    [
        "[" * 100 + "]" * 100,
        "- " * 100 + "x",
        "{a: " * 100 + "x" + "}" * 100,
        "kind: Tool\nmetadata: {name: Deep}\nspec:\n  category: data\n  notes: " + "[" * 65 + "]" * 65 + "\n",
    ],
)
async def test_collections_nested_deeper_than_the_limit_are_a_422_on_the_body(api, app, nested):
    # Far below the depth that crashes libyaml (30,000) so a regression fails here instead of killing pytest.
    before = await counts(app)
    body = assert_problem(await api.post("/v1/import", content=nested, headers=YAML), 422)
    assert fields_of(body) == {"body"} and body["errors"][0]["code"] == "too_deep"
    assert f"more than {catalog.MAX_DEPTH} deep" in body["detail"]
    assert await counts(app) == before


@pytest.mark.db
async def test_nesting_up_to_the_limit_is_parsed(api):
    at_limit = "[" * catalog.MAX_DEPTH + "]" * catalog.MAX_DEPTH  # a list, not a mapping: refused as a document
    body = assert_problem(await api.post("/v1/import", content=at_limit, headers=YAML), 422)
    assert fields_of(body) == {"documents[0]"}


@pytest.mark.parametrize("nested", ["'[' * 30000 + ']' * 30000", "'- ' * 30000 + 'x'", "'[' * 1_000_000"])
def test_a_nesting_that_crashes_libyaml_is_refused_without_crashing(nested):
    # In a subprocess: if the check regresses, the crash (SIGSEGV) kills the child, not the test run.
    code = textwrap.dedent(f"""
        from services.registry import catalog
        from shared.errors import Invalid
        try:
            catalog.parse_yaml(({nested}).encode())
        except Invalid as exc:
            print(exc.errors[0].field, exc.errors[0].code)
        else:
            print("accepted")
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the parser died (exit {done.returncode}): {done.stderr[-2000:]}"
    assert done.stdout.split() == ["body", "too_deep"], done.stdout + done.stderr


# --- body size --------------------------------------------------------------------------------------


@pytest.mark.db
async def test_a_body_over_the_limit_is_a_413_on_the_body_declared_or_streamed(api, app):
    before = await counts(app)
    big = b"#" * (catalog.MAX_BODY_BYTES + 1)
    body = assert_problem(await api.post("/v1/import", content=big, headers=YAML), 413)
    assert fields_of(body) == {"body"} and body["errors"][0]["code"] == "too_large"

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(catalog.MAX_BODY_BYTES // (1024 * 1024) + 1):
            yield b"#" * (1024 * 1024)
        yield b"#"

    body = assert_problem(await api.post("/v1/import", content=chunks(), headers=YAML), 413)
    assert fields_of(body) == {"body"}
    assert await counts(app) == before


@pytest.mark.db
async def test_a_streamed_body_under_the_limit_imports_and_replays_under_an_idempotency_key(api):
    doc = b"kind: Tool\nmetadata: {name: Streamed}\nspec: {category: data}\n"

    async def chunks():
        yield doc[:10]
        yield doc[10:]

    headers = {**YAML, "Idempotency-Key": "stream-1"}
    first = await api.post("/v1/import", content=chunks(), headers=headers)
    assert first.status_code == 201, first.text
    again = await api.post("/v1/import", content=doc, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    other = await api.post("/v1/import", content=doc.replace(b"Streamed", b"Other"), headers=headers)
    assert other.status_code == 409, other.text


# --- fields copied from one model into another --------------------------------------------------------


def _described(description: str, notes: str | None = None) -> str:
    extra = "" if notes is None else f", notes: '{notes}'"
    return f"kind: Tool\nmetadata: {{name: Described, description: '{description}'}}\nspec: {{category: data{extra}}}\n"


@pytest.mark.db
async def test_a_description_longer_than_the_notes_it_becomes_is_a_422_on_the_description(api, app):
    before = await counts(app)
    body = assert_problem(await api.post("/v1/import", content=_described("d" * 10_001), headers=YAML), 422)
    assert fields_of(body) == {"documents[0].metadata.description"}
    assert await counts(app) == before
    r = await api.post("/v1/import", content=_described("d" * 10_000), headers=YAML)
    assert r.status_code == 201, r.text
    tool = (await api.get(f"/v1/tools/{r.json()['tool_ids']['Described']}")).json()
    assert tool["notes"] == "d" * 10_000


@pytest.mark.db
async def test_a_copied_value_the_api_model_refuses_is_a_422_naming_the_document_field(api, app, monkeypatch):
    # The safety net under the limits above: whatever ToolIn refuses names the document's field, never a 500.
    class StricterToolIn(schemas.ToolIn):
        notes: str | None = schemas.Field(default=None, max_length=5)

    monkeypatch.setattr(schemas, "ToolIn", StricterToolIn)
    before = await counts(app)
    body = assert_problem(await api.post("/v1/import", content=_described("too long"), headers=YAML), 422)
    assert fields_of(body) == {"documents[0].metadata.description"}
    body = assert_problem(await api.post("/v1/import", content=_described("short", "too long"), headers=YAML), 422)
    assert fields_of(body) == {"documents[0].spec.notes"}
    csv_body = "name,category,notes\nFine,data,ok\nLong,data,too long\n"
    body = assert_problem(await api.post("/v1/import", content=csv_body, headers={"content-type": "text/csv"}), 422)
    assert fields_of(body) == {"rows[1].notes"}
    assert await counts(app) == before


# --- a big import: a handful of statements, not several per tool --------------------------------------


@pytest.mark.db
async def test_a_big_import_writes_every_tool_its_history_and_events_in_a_few_statements(api, app):
    rt = app.state.runtime
    n = 300
    yaml_body = "".join(
        f"---\nkind: Tool\nmetadata: {{name: 'Bulk {k:03}'}}\nspec: {{category: data}}\n" for k in range(n)
    )
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    engine = rt.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        r = await api.post("/v1/import", content=yaml_body, headers=YAML)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert r.status_code == 201 and r.json()["tools"] == n, r.text
    assert len(statements) < 30, f"{len(statements)} statements for {n} tools"  # one by one: 5 a tool

    ids = r.json()["tool_ids"]
    assert list(ids) == [f"Bulk {k:03}" for k in range(n)]
    history = rt.infra.outbox.metadata.tables["tool_history"]
    outbox = rt.infra.outbox.metadata.tables["outbox"]
    async with rt.transaction(readonly=True) as s:
        rows = (await s.execute(select(history.c.tool_id, history.c.action, history.c.version))).all()
        events = (await s.execute(select(outbox.c.subject, outbox.c.payload).order_by(outbox.c.seq))).all()
    assert sorted(rows) == sorted((tool_id, "created", 1) for tool_id in ids.values())
    created = [json.loads(e.payload) for e in events if e.subject == "registry.tool.created"]
    assert [e["subject_id"] for e in created] == list(ids.values())  # in the catalogue's order
    assert created[7]["data"]["name"] == "Bulk 007"
    tool = (await api.get(f"/v1/tools/{ids['Bulk 007']}")).json()
    assert tool["name"] == "Bulk 007" and tool["version"] == 1

    # Taken names and unknown categories are still found per document, and nothing is written.
    before = await counts(app)
    clash = "".join(
        f"---\nkind: Tool\nmetadata: {{name: '{name}'}}\nspec: {{category: data}}\n"
        for name in ["Fresh 1", "Fresh 2", "Bulk 299", "Bulk 000"]
    )
    body = assert_problem(await api.post("/v1/import", content=clash, headers=YAML), 409)
    assert "documents[2]" in body["detail"] and body["tool_id"] == ids["Bulk 299"]
    unknown = "".join(
        f"---\nkind: Tool\nmetadata: {{name: 'New {k}'}}\nspec: {{category: {c}}}\n"
        for k, c in enumerate(["data", "data", "gadgets"])
    )
    body = assert_problem(await api.post("/v1/import", content=unknown, headers=YAML), 422)
    assert fields_of(body) == {"documents[2].spec.category"}
    assert await counts(app) == before
