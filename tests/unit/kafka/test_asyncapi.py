"""The AsyncAPI document: committed as contract/asyncapi.yaml, served at /docs, and saying
what the service reads and writes (payloads per event type, key, headers, dead letters)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from faststream.asgi import AsgiFastStream
from faststream.specification.asyncapi.v3_0_0.schema import ApplicationSchema

from service.app import documentation_app
from service.core.contract import VERSION_HEADER, json_schema
from service.core.domain import Reason
from service.core.letter_fit import CUT_HEADERS
from service.core.letters import ERROR_HEADERS

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "contract" / "asyncapi.yaml"
REGENERATE = (
    "faststream docs gen --yaml --factory service.app:documentation_app -o contract/asyncapi.yaml"
)


def document() -> dict[str, Any]:
    return documentation_app().schema.to_specification().to_jsonable()  # type: ignore[no-any-return]


def test_the_committed_document_is_what_the_code_generates() -> None:
    generated = documentation_app().schema.to_specification().to_yaml()
    assert COMMITTED.read_text() == generated, (
        f"contract/asyncapi.yaml is not what the code generates; regenerate it with: {REGENERATE}"
    )


def test_faststream_docs_gen_writes_the_committed_document(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.yaml"
    faststream = Path(sys.executable).parent / "faststream"
    args = ["docs", "gen", "--yaml", "--factory", "service.app:documentation_app", "-o", str(out)]
    subprocess.run([str(faststream), *args], cwd=ROOT, check=True, timeout=120)
    assert out.read_text() == COMMITTED.read_text(), f"regenerate it with: {REGENERATE}"


def test_it_is_a_valid_asyncapi_3_document() -> None:
    ApplicationSchema.model_validate(document())  # what `faststream docs serve FILE` checks
    assert document()["asyncapi"] == "3.0.0"


def test_product_events_have_one_message_per_event_type_with_key_and_headers() -> None:
    doc = document()
    channel = doc["channels"]["product-events"]
    assert channel["address"] == "inventory.product-events"
    names = ["ProductUpserted", "ProductDeleted", "StockAdjusted"]
    assert list(channel["messages"]) == names
    operation = doc["operations"]["product-events"]
    assert operation["action"] == "receive"
    assert [m["$ref"].rsplit("/", 1)[-1] for m in operation["messages"]] == names
    contract = json_schema()["$defs"]
    for name in names:
        message = doc["components"]["messages"][name]
        assert message["payload"] == {"$ref": f"#/components/schemas/{name}"}
        assert message["headers"]["properties"][VERSION_HEADER]["enum"] == ["1"]
        assert message["bindings"]["kafka"]["key"]["pattern"] == "^[1-9][0-9]{0,18}$"
        # the same schema as contract/product-event.v1.schema.json, references moved
        published = json.dumps(contract[name]).replace("#/$defs/", "#/components/schemas/")
        assert doc["components"]["schemas"][name] == json.loads(published)


def test_the_dead_letter_channel_names_every_header_the_sink_adds() -> None:
    doc = document()
    channel = doc["channels"]["dead-letters"]
    assert channel["address"] == "inventory.product-events.dlq"
    assert doc["operations"]["dead-letters"]["action"] == "send"
    [ref] = channel["messages"].values()
    letter = doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[-1]]
    headers = letter["headers"]
    assert list(headers["properties"]) == [*ERROR_HEADERS, *CUT_HEADERS]
    assert headers["required"] == list(ERROR_HEADERS)
    assert headers["properties"]["error.reason"]["enum"] == [r.value for r in Reason]
    assert "unknown_contract_version" in headers["properties"]["error.reason"]["enum"]
    assert "key" in letter["bindings"]["kafka"]
    assert "correlationId" not in letter


async def call(app: AsgiFastStream, method: str, path: str) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
        "scheme": "http",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 1),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[arg-type]
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def test_the_app_serves_the_same_document_and_no_publishing_form() -> None:
    app = documentation_app()

    status, body = await call(app, "GET", "/docs.json")
    assert status == 200 and json.loads(body) == document()
    status, page = await call(app, "GET", "/docs")
    assert status == 200 and b"ProductUpserted" in page and b"error.reason" in page
    # FastStream's "try it out" would publish to the topics for anyone who reaches the port.
    status, _ = await call(app, "POST", "/docs/try")
    assert status == 404
