"""Reading Centrapay's answers: status names, BigNumber strings, count or totalCount,
errors capped at 1,000 with exact counts, and answers that cannot be read."""

from __future__ import annotations

import pytest

from folderseal.providers import Remote
from folderseal.providers.centrapay import parse

# The documentation's example, trailing comma and all.
DOCUMENTED = """{
	"id": "abc1234",
	"status": "complete",
	"type": "farmlands-external-asset",
	"count": "0",
	"errorCount": "1",
	"errors": [
		{
			"externalId": "1234",
			"index": "5",
			"message": "No closing bracket found",
		}
	]
}"""


def test_the_documented_example() -> None:
    found = parse.batch(parse.decode(DOCUMENTED))
    assert (found.id, found.status, found.type) == ("abc1234", "complete",
                                                    "farmlands-external-asset")
    assert (found.count, found.error_count) == (0, 1) and found.final
    assert found.report(test=False) == {
        "status": "complete", "count": 0, "errorCount": 1, "test": False,
        "errors": [{"index": 5, "externalId": "1234", "message": "No closing bracket found"}]}


@pytest.mark.parametrize(("name", "state"), [
    ("created", Remote.RUNNING), ("copied", Remote.RUNNING), ("CHUNKED", Remote.RUNNING),
    ("complete", Remote.CLOSED), ("error", Remote.FAILED), ("exploded", None), ("", None)])
def test_status_names(name: str, state: Remote | None) -> None:
    assert parse.remote_state(name) == state


def test_counters_as_big_number_strings_numbers_or_total_count() -> None:
    big = parse.batch({"id": "b", "status": "complete", "count": "160000000000000000001",
                       "errorCount": 2})
    assert big.count == 160000000000000000001 and big.error_count == 2
    assert parse.batch({"id": "b", "status": "chunked", "totalCount": " 42 "}).count == 42
    assert parse.batch({"id": "b", "status": "chunked", "count": 7.0}).count == 7
    assert parse.batch({"id": 12, "status": "created"}).id == "12"
    none = parse.batch({"id": "b", "status": "created", "count": ""})
    assert none.count is None and none.error_count is None


@pytest.mark.parametrize("counters", [{"count": "many"}, {"errorCount": "1.5"},
                                      {"totalCount": [1]}, {"count": True}])
def test_a_counter_that_is_no_whole_number_is_refused(counters: dict[str, object]) -> None:
    with pytest.raises(parse.PayloadError, match="not a whole number"):
        parse.batch({"id": "b", "status": "complete", **counters})


def test_errors_are_capped_and_the_counts_stay_exact() -> None:
    errors = [{"index": str(n), "externalId": f"e{n}", "message": "bad"} for n in range(2500)]
    found = parse.batch({"id": "b", "status": "complete", "count": "5000",
                         "errorCount": "2500", "errors": errors})
    report = found.report(test=True)
    assert len(report["errors"]) == parse.MAX_ERRORS == 1000
    assert report["errorCount"] == 2500 and report["count"] == 5000 and report["test"]
    assert report["errors"][999] == {"index": 999, "externalId": "e999", "message": "bad"}
    # No errorCount: the number of errors listed (all of them, not the kept ones).
    listed = parse.batch({"id": "b", "status": "complete", "count": "5000", "errors": errors})
    assert listed.report(test=False)["errorCount"] == 2500


def test_odd_error_entries_are_kept_readably() -> None:
    found = parse.batch({"id": "b", "status": "complete", "count": "3", "errors": [
        "just text", {"message": "x" * 900}, {"index": "row 7", "message": "m"}, {}]})
    errors = found.report(test=False)["errors"]
    assert errors[0] == {"index": None, "externalId": None, "message": "just text"}
    assert len(errors[1]["message"]) == parse.MESSAGE_MAX
    assert errors[2]["index"] == "row 7"
    assert errors[3] == {"index": None, "externalId": None, "message": ""}


def test_an_envelope_is_opened() -> None:
    assert parse.batch({"data": {"id": "b", "status": "copied"}}).status == "copied"


@pytest.mark.parametrize("data", [[], "text", 3, {"id": "b", "errors": "none"}])
def test_what_is_not_a_batch(data: object) -> None:
    with pytest.raises(parse.PayloadError):
        parse.batch(data)


def test_what_is_not_json() -> None:
    with pytest.raises(parse.PayloadError, match="not JSON"):
        parse.decode("<html>502 Bad Gateway</html>")


def test_a_final_batch_must_carry_its_report() -> None:
    """complete or error without counts is no report (asked again); a complete one
    must say its count."""
    for status in ("complete", "error"):
        found = parse.batch({"id": "b", "status": status, "errors": []})
        assert found.final and not found.reported
        with pytest.raises(parse.PayloadError, match=f"{status} without its report"):
            parse.checked_report(found, test=False)
    with pytest.raises(parse.PayloadError, match="without a count"):
        parse.checked_report(parse.batch({"id": "b", "status": "complete",
                                          "errorCount": "0"}), test=False)
    failed = parse.checked_report(parse.batch({"id": "b", "status": "error",
                                               "errorCount": "0"}), test=False)
    assert failed == {"status": "error", "count": None, "errorCount": 0, "errors": [],
                      "test": False}


def test_error_messages() -> None:
    assert parse.message({"message": "Invalid api key"}) == "Invalid api key"
    assert parse.message({"errors": [{"message": "a"}, "b"]}) == "a; b"
    assert parse.message({"error": {"message": "nested"}}) == "nested"
    assert parse.message(["no"]) == ""
