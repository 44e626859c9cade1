"""The operations routes every service shares (dead letters, audit, health) document what they answer:
one success with a schema, and problem+json for every error."""

from __future__ import annotations

from tests.shared.sample import make_app


def test_the_shared_operations_routes_document_their_answers_and_problems(tmp_path):
    app = make_app(
        f"sqlite:///{tmp_path}/ops.db", "nats://127.0.0.1:1", handlers=lambda rt: {"sample.x.happened": None}
    )
    doc = app.openapi()
    ops = {
        (path, method): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if path.startswith("/v1/dead-letters") or path.startswith("/v1/audit")
    }
    assert set(ops) == {
        ("/v1/dead-letters", "get"),
        ("/v1/dead-letters/{dead_letter_id}", "get"),
        ("/v1/dead-letters/replay", "post"),
        ("/v1/dead-letters/{dead_letter_id}/replay", "post"),
        ("/v1/dead-letters/{dead_letter_id}/discard", "post"),
        ("/v1/audit", "get"),
    }
    for (path, method), op in ops.items():
        responses = op["responses"]
        ok = [s for s in responses if s.startswith("2")]
        assert len(ok) == 1, (path, method)
        content = responses[ok[0]]["content"]
        assert all(c.get("schema") for c in content.values()), (path, method, content)
        assert "$ref" in content["application/json"]["schema"], (path, method)
        for status in ("401", "403", "422", "500"):
            assert list(responses[status]["content"]) == ["application/problem+json"], (path, method, status)
    assert set(ops["/v1/audit", "get"]["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert "404" in ops["/v1/dead-letters/{dead_letter_id}/replay", "post"]["responses"]
