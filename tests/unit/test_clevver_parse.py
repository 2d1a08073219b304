"""Reading Clevver's answers: every envelope and field form seen or likely, as plain dicts."""

from __future__ import annotations

from typing import Any

import pytest

from folderseal.providers import Remote
from folderseal.providers.clevver import parse

SUM = "f604699904334d333b17b872b1183d22f604699904334d333b17b872b1183d22"
UUID = "5c893d75-2a8b-4712-b56f-89377ac97681"


def test_a_created_batch_as_documented() -> None:
    info = parse.batch({"status": "success", "data": {
        "id": UUID, "status": "created", "progress": 0, "created_at": "2023-11-01 13:53:12",
        "message": "Batch created successfully"}})
    assert info == parse.BatchInfo(UUID, "created", 0.0, "Batch created successfully")


@pytest.mark.parametrize("data", [
    {"message": "outside", "status": "success", "data": {"id": UUID, "status": "processing"}},
    {"status": "success", "data": {"id": UUID, "status": "processing", "message": "outside"}},
])
def test_the_message_is_read_inside_or_outside_data(data: dict[str, Any]) -> None:
    assert parse.batch(data).message == "outside"
    assert parse.message(data) == "outside"


def test_an_answer_without_an_envelope_is_read_as_the_object_itself() -> None:
    info = parse.batch({"id": UUID, "status": "Delivered", "progress": "100"})
    assert (info.id, info.status, info.progress) == (UUID, "delivered", 100.0)


@pytest.mark.parametrize(("value", "expected"), [
    (10.3, 10.3), (97, 97.0), ("10.3", 10.3), (" 42 ", 42.0), ("97%", 97.0), (0, 0.0),
    (120, 100.0), (-5, 0.0), (None, None), ("", None), ("soon", None), (True, None),
    ("nan", None), ([], None),
])
def test_progress_as_number_or_string(value: Any, expected: float | None) -> None:
    assert parse.progress(value) == expected


def test_unknown_fields_are_ignored() -> None:
    info = parse.batch({"data": {"id": 7, "status": "created", "colour": "blue",
                                 "nested": {"x": [1, 2]}}})
    assert (info.id, info.status) == ("7", "created")


@pytest.mark.parametrize(("name", "state"), [
    ("created", Remote.UPLOADED), ("processing", Remote.RUNNING),
    ("delivered", Remote.CLOSED), ("DELIVERED", Remote.CLOSED), ("archived", None),
    ("", None),
])
def test_status_names(name: str, state: Remote | None) -> None:
    assert parse.remote_state(name) == state


def test_the_attach_answer_as_documented() -> None:
    asset = parse.asset({"message": "Asset successfully uploaded", "status": "success",
                         "data": {"id": "d37dffe9", "status": "created",
                                  "file": {"url": "/uploads/digital_asset/file/x.png"},
                                  "file_size": 1752887, "txid": None, "stored_on": None,
                                  "checksum": SUM.upper(), "name": "myphoto.png",
                                  "duplicate": False, "tag_list": []}})
    assert asset.id == "d37dffe9"
    assert asset.checksum == SUM        # compared in lower case
    assert asset.txid == "" and asset.stored_on == ""
    assert asset.duplicate is False and asset.file_size == 1752887
    assert asset.url == ""              # file.url is where it was uploaded, not a receipt


def test_a_receipt_has_its_txid_and_urls() -> None:
    asset = parse.asset({"data": {"id": "a1", "checksum": SUM, "txid": "0xabc",
                                  "url": "https://clevver.org/f/a1",
                                  "forever_url": "https://arweave.net/abc",
                                  "stored_on": "arweave", "status": "cached",
                                  "updated_at": "2024-01-24T05:32:50.692Z",
                                  "duplicate": "true"}})
    assert asset.receipt() == {
        "asset_id": "a1", "checksum": SUM, "txid": "0xabc", "url": "https://clevver.org/f/a1",
        "forever_url": "https://arweave.net/abc", "stored_on": "arweave",
        "updated_at": "2024-01-24T05:32:50.692Z", "duplicate": True}


def test_an_asset_without_an_id_is_unreadable() -> None:
    with pytest.raises(parse.PayloadError, match="no id"):
        parse.asset({"data": {"checksum": SUM}})
    with pytest.raises(parse.PayloadError, match="not a JSON object"):
        parse.asset({"data": ["a1"]})


def test_trailing_commas_as_in_the_published_examples_are_forgiven() -> None:
    data = parse.decode('{"status": "success", "data": [{"id": "a", "progress": 97,},],}')
    assert [b.id for b in parse.batches(data)] == ["a"]
    with pytest.raises(parse.PayloadError):
        parse.decode("<html>Bad gateway</html>")


def test_the_active_batch_list() -> None:
    listed = parse.batches({"status": "success", "data": [
        {"id": "a", "status": "processing", "progress": 10.3},
        {"id": "b", "status": "processing", "progress": "97"}, "junk"]})
    assert [(b.id, b.progress) for b in listed] == [("a", 10.3), ("b", 97.0)]


@pytest.mark.parametrize(("data", "said"), [
    ({"status": "error", "message": "Quota exceeded"}, "Quota exceeded"),
    ({"status": "error", "data": {"message": "Insufficient credit"}}, "Insufficient credit"),
    ({"error": "Unauthenticated."}, "Unauthenticated."),
    ({"errors": ["file is required", {"field": "file"}]}, 'file is required; {"field": "file"}'),
    ({"status": "error"}, ""),
    ("plain", ""),
])
def test_what_an_error_answer_says(data: Any, said: str) -> None:
    assert parse.message(data) == said
