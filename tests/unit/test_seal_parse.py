"""SEAL's answers, as recorded in its documentation, quirks included."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from folderseal.providers.seal import parse

# Payloads as the documentation prints them (its curly quotes made straight).
CREATE = {"id": "2123", "providerSettingsId": "1", "creationDate": "2023-01-01 12:00:00",
          "status": "1"}
UPLOAD = {"id": "1", "counterpartyId": "1", "name": "file_name.pdf", "signed": "false",
          "hash": None, "signature": None, "batchId": 2123,
          "creationDate": "2023-01-01 00:00:00", "isZip": "true", "tsaId": "1"}
STATUS = {"id": 2123, "status": "READY", "creationDate": "2023-01-01 10:00:00",
          "documents": [{"id": "1", "signed": "false", "fileName": "test.pdf",
                         "signingResult_Success": "false"}]}
ACCEPT = {"id": 2123, "providerSettingsId": "1", "creationDate": "2023-01-01 10:00:00",
          "status": "0"}
DELETE = {"id": 2123, "status": "DELETED", "creationDate": "2023-01-01 10:00:00",
          "documents": []}


def test_create_answer_with_string_id_and_numeric_status() -> None:
    """CreateBatch's id is a string and its status a numeric code (mapped, newer table)."""
    info = parse.batch(CREATE)
    assert info.id == "2123" and info.status == "UPLOADED"
    assert info.created == datetime(2023, 1, 1, 12, 0, tzinfo=UTC)


def test_status_answer_with_numeric_id_and_named_status() -> None:
    """BatchStatus has a numeric id, a status name, and documents with string booleans."""
    info = parse.batch(STATUS)
    assert info.id == "2123" and info.status == "READY"
    [document] = info.documents
    assert (document.id, document.name, document.signed, document.success) == \
        ("1", "test.pdf", False, False)


def test_accept_and_delete_answers() -> None:
    """AcceptBatch's numeric code 0 is NEW; BatchDeleteCache says DELETED by name."""
    assert parse.batch(ACCEPT).status == "NEW"
    assert parse.batch(DELETE).status == "DELETED"


def test_upload_answer_is_a_document_named_by_name() -> None:
    """The upload answer names its file "name" (status says "fileName"); both are read."""
    document = parse.document(UPLOAD)
    assert document.name == "file_name.pdf" and document.signed is False
    assert document.success is None


def test_documented_fields_give_no_reason() -> None:
    """The documented document fields (as in the status and upload examples) hold no
    reason: none is made up."""
    assert parse.document(STATUS["documents"][0]).reason == ""
    assert parse.document(UPLOAD).reason == ""


@pytest.mark.parametrize("field", ["signingResult_Message", "errorMessage", "reason",
                                   "signingResult_Error"])
def test_an_undocumented_reason_field_is_passed_on(field: str) -> None:
    """A text field SEAL adds that speaks of an error, message or reason is SEAL's own
    word on the document, kept with its name; an empty one is not."""
    data = {**STATUS["documents"][0], field: "  the PDF is encrypted  "}
    assert parse.document(data).reason == f"{field}: the PDF is encrypted"
    assert parse.document({**STATUS["documents"][0], field: " "}).reason == ""


@pytest.mark.parametrize("field", ["resultUrl", "detailsLink", "resultDetail", "statusText"])
def test_only_named_reason_fields_are_passed_on(field: str) -> None:
    """A field outside the allow-list of reason names gives no reason, even when its name
    speaks of a result or detail: it may hold a pre-signed link (a read key)."""
    data = {**STATUS["documents"][0], field: "https://s3.example.org/out.pdf?X-Amz-Signature=ab"}
    assert parse.document(data).reason == ""


def test_a_reason_holding_a_link_with_a_query_is_not_passed_on() -> None:
    """A reason field whose text holds a URL with a query string (a key, perhaps) is left
    out; the next named field, without one, is taken."""
    data = {**STATUS["documents"][0],
            "errorMessage": "see https://seal.example.org/r/9?token=s3cr3t",
            "reason": "the PDF is encrypted"}
    assert parse.document(data).reason == "reason: the PDF is encrypted"


@pytest.mark.parametrize(("value", "expected"), [
    (2123, "2123"), ("2123", "2123"), (" 2123 ", "2123"), (2123.0, "2123"), ("abc-1", "abc-1"),
])
def test_ids_as_numbers_or_strings(value: object, expected: str) -> None:
    """Ids come as numbers or strings and are compared as text."""
    assert parse.text_id(value) == expected


@pytest.mark.parametrize("value", [None, "", True, "  "])
def test_missing_ids_are_payload_errors(value: object) -> None:
    """A missing, empty or boolean id is not an id."""
    with pytest.raises(parse.PayloadError):
        parse.text_id(value)


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("True", True), (True, True), (1, True), ("false", False), (False, False),
    (0, False), ("maybe", None), (None, None),
])
def test_booleans_as_strings_or_booleans(value: object, expected: bool | None) -> None:
    """Booleans come as "true"/"false" strings, real booleans or numbers."""
    assert parse.boolean(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("CLOSED", "CLOSED"), ("closed", "CLOSED"), ("In Progress", "IN_PROGRESS"), (6, "CLOSED"),
    ("6", "CLOSED"), (7, "DELETED"), (0, "NEW"), (9, "UNKNOWN(9)"), ("SPLINED", "SPLINED"),
])
def test_status_names_are_trusted_and_codes_mapped(value: object, expected: str) -> None:
    """Names are taken as they are; numbers go through the newer table (6 = CLOSED)."""
    assert parse.status_name(value) == expected


def test_the_older_status_table_can_be_configured() -> None:
    """With the older table, code 5 means CLOSED (in the newer one it is FINISHING)."""
    older = ["NEW", "ACCEPTED", "READY", "IN_PROGRESS", "FINISHING", "CLOSED", "DELETED"]
    assert parse.status_name(5, older) == "CLOSED"
    assert parse.status_name(5) == "FINISHING"


@pytest.mark.parametrize(("value", "expected"), [
    ("2023-01-01 12:00:00", datetime(2023, 1, 1, 12, tzinfo=UTC)),
    ("2023-01-01T12:00:00Z", datetime(2023, 1, 1, 12, tzinfo=UTC)),
    ("2023-01-01T14:00:00+02:00", datetime(2023, 1, 1, 12, tzinfo=UTC)),
    ("not a date", None), (None, None),
])
def test_dates_with_or_without_a_zone(value: object, expected: datetime | None) -> None:
    """Dates without a zone are UTC; ISO 8601 with a zone is honoured; junk is None."""
    assert parse.timestamp(value) == expected


@pytest.mark.parametrize("payload", [[], "text", {"status": "NEW"},
                                     {"id": 1, "documents": {"a": 1}},
                                     {"id": 1, "documents": ["not an object"]}])
def test_unreadable_answers_are_payload_errors(payload: object) -> None:
    """Answers that are not a batch (no id, documents not a list, no file name) are refused."""
    with pytest.raises(parse.PayloadError):
        parse.batch(payload)


def test_a_document_without_a_name_is_kept_nameless() -> None:
    """One odd document does not make the whole status unreadable; it matches nothing."""
    info = parse.batch({"id": 1, "status": "UPLOADED", "documents": [{"id": "1"}]})
    assert [d.name for d in info.documents] == [""]


def test_whether_a_status_came_as_a_name() -> None:
    """A status given by name is trusted; a number is only mapped, and says so."""
    assert parse.batch({"id": 1, "status": "UPLOADED"}).named
    assert not parse.batch({"id": 1, "status": 1}).named
    assert not parse.batch({"id": 1, "status": "1"}).named
