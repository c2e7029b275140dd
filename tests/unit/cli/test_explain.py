"""A failed start is printed as one line: the most specific explanation of its cause, else
the cause itself with where to read more."""

from __future__ import annotations

from aiokafka.errors import GroupAuthorizationFailedError

from service.cli.explain import explain
from service.cli.serving import StartFailed
from service.postgres.schema_gate import SchemaNotReady


def failed_start(cause: BaseException) -> StartFailed:
    try:
        raise StartFailed(cause) from cause
    except StartFailed as error:
        return error


def test_a_failed_start_is_explained_by_its_cause() -> None:
    refused = failed_start(GroupAuthorizationFailedError("Not authorized to access group"))
    message = explain(refused)
    assert message is not None
    assert message.startswith("Kafka denied this client its consumer group (")
    assert "Read on group KAFKA_GROUP_ID" in message
    assert explain(failed_start(SchemaNotReady("the schema is behind"))) == "the schema is behind"


def test_a_failed_start_with_an_unknown_cause_names_it_and_where_to_read_more() -> None:
    message = explain(failed_start(ValueError("no such thing\nsecond line")))
    assert message == (
        "the consumer could not start (ValueError: no such thing); the log above says more, "
        "and LOG_LEVEL=DEBUG logs the traceback"
    )
