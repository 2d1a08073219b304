"""Tests for folderseal.publish.sidecar: the sidecar and error record schema, timestamps,
redaction."""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from folderseal import __version__
from folderseal.core.model import (
    BatchRecord,
    BatchState,
    DocumentResult,
    Event,
    FileRecord,
    FileState,
    Output,
    Signer,
)
from folderseal.core.redact import REDACTOR
from folderseal.publish import sidecar

ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
T0 = datetime(2026, 11, 22, 10, 0, 1, 120000, tzinfo=UTC).timestamp()


def record(source: str = "2026/11/invoice.pdf") -> FileRecord:
    return FileRecord(
        id="f1", folder="scans", source=source, state=FileState.PUBLISHED, dev=1, ino=2,
        size=48213, mtime_ns=3, sha256="a" * 64, batch_id="job1", entry="0000_invoice.pdf",
        attempts=1, result=None, outputs=(), error_code=None, error_message=None,
        seen_at=T0, claimed_at=T0 + 1,
    )


def batch_record(remote_id: str | None = "2123") -> BatchRecord:
    return BatchRecord(
        id="job1", folder="scans", provider="signius", state=BatchState.DOWNLOADED,
        claimed_by="scan-host-1", lease_until=T0 + 60, next_attempt_at=None, attempts=0,
        remote_id=remote_id, package_sha256=None, package_bytes=None, failed_step=None,
        error_code=None, error_message=None, created_at=T0 + 2, updated_at=T0 + 9,
    )


def batch(state: str, at: float) -> Event:
    return Event(kind="batch.state", file_id=None, state=state, at=at)


def file(state: str, at: float, file_id: str = "f1") -> Event:
    return Event(kind="file.state", file_id=file_id, state=state, at=at)


# A delivered file's batch, as the state machine records it: the result comes back (READY)
# in the download step, just before DOWNLOADED.
HISTORY = [batch("CREATED", T0 + 3), batch("UPLOADED", T0 + 4), batch("ACCEPTING", T0 + 5),
           batch("ACCEPTED", T0 + 6), batch("CLOSED", T0 + 7), file("READY", T0 + 7.5),
           batch("DOWNLOADED", T0 + 8)]


def steps_of(history: list[Event], end: str = "failed", outcome: str = "signed") -> list[str]:
    return [s["step"] for s in sidecar.timeline(record(), batch_record(), history, (end, T0 + 9),
                                                outcome=outcome)]


def common(rec: FileRecord, batch: BatchRecord | None = None) -> dict[str, Any]:
    batch = batch if batch is not None else batch_record()
    return {
        "provider_name": "signius", "provider_kind": "seal", "batch": batch, "batch_files": 37,
        "document": "1", "node": "scan-host-1",
        "steps": sidecar.timeline(rec, batch, HISTORY, ("delivered", T0 + 9),
                                  outcome="signed"),
    }


def signed(rec: FileRecord, outputs: list[dict[str, Any]], **fields: Any) -> bytes:
    """The sidecar of a file a signing provider (seal, local) delivered."""
    return sidecar.delivered(rec, outputs, outcome="signed", **fields)


OUTPUTS = [{"path": "2026/11/invoice.pdf", "role": "signed", "sha256": "b" * 64,
            "bytes": 61102}]


def test_signed_sidecar_has_exactly_the_documented_fields() -> None:
    """signed() writes the fields of docs/design.md's sidecar example and no others."""
    rec = record()
    data = json.loads(signed(rec, OUTPUTS, **common(rec)))
    assert set(data) == {"schema", "status", "folder", "source", "input", "outputs",
                         "provider", "batch", "node", "version", "timeline", "signer"}
    assert data["schema"] == "folderseal.sidecar/1"
    assert data["status"] == "signed"
    assert data["folder"] == "scans"
    assert data["source"] == "2026/11/invoice.pdf"
    assert data["input"] == {"sha256": "a" * 64, "bytes": 48213}
    assert data["outputs"] == [{"path": "2026/11/invoice.pdf", "role": "signed",
                                "sha256": "b" * 64, "bytes": 61102}]
    assert data["provider"] == {"name": "signius", "kind": "seal", "batch": "2123",
                                "document": "1"}
    assert data["batch"] == {"id": "job1", "files": 37}
    assert data["node"] == "scan-host-1"
    assert data["version"] == __version__
    for step in data["timeline"]:
        assert set(step) == {"step", "at"}


def test_the_signer_is_the_certificate_the_result_names() -> None:
    """signer holds subject, issuer, serial, fingerprint and self-signed of the certificate
    the provider's result names; null when none was read (and it survives the store)."""
    who = Signer(subject="CN=Seal", issuer="CN=CA", serial_number="0A1B",
                 fingerprint_sha256="c" * 64, self_signed=False)
    result = DocumentResult(entry="0000_invoice.pdf", signer=who)
    rec = dataclasses.replace(record(), result=DocumentResult.from_json(result.to_json()))
    data = json.loads(signed(rec, OUTPUTS, **common(rec)))
    assert data["signer"] == {"subject": "CN=Seal", "issuer": "CN=CA", "serial_number": "0A1B",
                              "fingerprint_sha256": "c" * 64, "self_signed": False}
    assert json.loads(signed(record(), OUTPUTS, **common(record())))["signer"] is None


def test_detached_outputs_keep_their_roles() -> None:
    """An original plus a detached signature are listed with their own roles and hashes."""
    rec = record("letter.txt")
    outputs = [{"path": "letter.txt", "role": "original", "sha256": "a" * 64, "bytes": 10},
               {"path": "letter.txt.p7s", "role": "signature", "sha256": "c" * 64,
                "bytes": 3000, "n": 0}]
    data = json.loads(signed(rec, outputs, **common(rec)))
    assert data["outputs"] == [
        {"path": "letter.txt", "role": "original", "sha256": "a" * 64, "bytes": 10},
        {"path": "letter.txt.p7s", "role": "signature", "sha256": "c" * 64, "bytes": 3000},
    ]


def test_provider_batch_falls_back_to_the_batch_id() -> None:
    """Without a remote id (the local provider), provider.batch is the batch id."""
    rec = record()
    data = json.loads(signed(rec, OUTPUTS, **common(rec, batch_record(remote_id=None))))
    assert data["provider"]["batch"] == "job1"


def test_timeline_lists_the_steps_in_order() -> None:
    """The timeline runs seen, claimed, batched, the provider's steps, then the end step."""
    rec = record()
    data = json.loads(signed(rec, OUTPUTS, **common(rec)))
    assert [s["step"] for s in data["timeline"]] == [
        "seen", "claimed", "batched", "submitted", "accepted", "signed", "downloaded",
        "delivered"]
    assert data["timeline"][0]["at"] == "2026-11-22T10:00:01.120Z"
    assert data["timeline"][1]["at"] == "2026-11-22T10:00:02.120Z"


def test_timestamps_are_iso_utc_with_milliseconds_and_z() -> None:
    """Every "at" is ISO 8601 in UTC, with milliseconds and a Z."""
    rec = record()
    data = json.loads(signed(rec, OUTPUTS, **common(rec)))
    for step in data["timeline"]:
        assert ISO_MS_Z.match(step["at"]), step
    assert sidecar.iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert sidecar.iso(T0) == "2026-11-22T10:00:01.120Z"
    assert sidecar.iso(1_800_000_000.5) == "2027-01-15T08:00:00.500Z"


def test_a_step_repeated_after_a_retry_is_shown_once() -> None:
    """A state reached twice (a retry) appears once, at its first time."""
    rec = record()
    steps = sidecar.timeline(rec, batch_record(), [batch("ACCEPTING", T0 + 5),
                                          batch("ACCEPTING", T0 + 50)], ("delivered", T0 + 60),
                             outcome="signed")
    assert [s["step"] for s in steps].count("submitted") == 1
    assert steps[3] == {"step": "submitted", "at": sidecar.iso(T0 + 5)}


def test_a_file_the_provider_did_not_sign_has_no_signed_or_downloaded_step() -> None:
    """A file rejected at download (not signed, missing, refused by the signer) was
    submitted and accepted, never signed or downloaded; a good file of the same batch was."""
    rejected = [*HISTORY[:5], file("READY", T0 + 7.5, "f2"), file("REJECTED", T0 + 7.6),
                HISTORY[-1]]
    assert steps_of(rejected) == ["seen", "claimed", "batched", "submitted", "accepted",
                                  "failed"]
    other = sidecar.timeline(dataclasses.replace(record(), id="f2"), batch_record(), rejected,
                             ("delivered", T0 + 9), outcome="signed")
    assert [s["step"] for s in other][-3:] == ["signed", "downloaded", "delivered"]


def test_a_file_rejected_before_accept_has_no_submitted_step() -> None:
    """A file that left its batch before the batch was submitted shows none of the
    batch's later steps."""
    history = [batch("CREATED", T0 + 3), file("REJECTED", T0 + 3.5), *HISTORY[1:]]
    assert steps_of(history) == ["seen", "claimed", "batched", "failed"]


def test_a_file_published_then_refused_by_the_outbox_was_signed_and_downloaded() -> None:
    """A file whose good result could not be published (a name the outbox refuses) was
    signed and downloaded: those steps stay."""
    history = [*HISTORY, file("REJECTED", T0 + 8.5)]
    assert steps_of(history)[-3:] == ["signed", "downloaded", "failed"]


def test_a_retry_into_the_same_batch_counts_the_batch_steps_again() -> None:
    """A file put back into its batch by a retry shows the batch's later steps."""
    history = [*HISTORY[:4], file("REJECTED", T0 + 6.5), batch("FAILED", T0 + 6.6),
               file("FAILED", T0 + 6.7), file("BATCHED", T0 + 20), batch("ACCEPTED", T0 + 20),
               batch("CLOSED", T0 + 21), file("READY", T0 + 22), batch("DOWNLOADED", T0 + 23)]
    assert steps_of(history, "delivered") == [
        "seen", "claimed", "batched", "submitted", "accepted", "signed", "downloaded",
        "delivered"]


def test_failed_record_has_status_and_error() -> None:
    """failed() writes status "failed" and error {code, message, attempts}."""
    rec = record()
    data = json.loads(sidecar.failed(rec, "provider_refused", "the provider refused it", 3,
                                     "2026/11/invoice.pdf", **common(rec)))
    assert data["schema"] == "folderseal.sidecar/1"
    assert data["status"] == "failed"
    assert data["source"] == "2026/11/invoice.pdf"
    assert data["input"] == {"sha256": "a" * 64, "bytes": 48213}
    assert data["provider"]["name"] == "signius"
    assert data["error"]["code"] == "provider_refused"
    assert data["error"]["message"] == "the provider refused it"
    assert data["error"]["attempts"] == 3
    assert [s["step"] for s in data["timeline"]][-1] == "delivered"


def test_failed_before_batching_has_no_batch() -> None:
    """A file that failed before it was batched has null batch and provider batch."""
    rec = record()
    data = json.loads(sidecar.failed(
        rec, "stuck", "never settled", 0, "x.pdf", provider_name="signius",
        provider_kind="seal", batch=None, batch_files=0, document="", node="n",
        steps=sidecar.timeline(rec, None, [], ("failed", T0 + 5), outcome="")))
    assert data["batch"] == {"id": None, "files": 0}
    assert data["provider"]["batch"] is None and data["provider"]["document"] is None
    assert [s["step"] for s in data["timeline"]] == ["seen", "claimed", "failed"]


def test_invalid_utf8_source_is_readable_json() -> None:
    """A source name with invalid UTF-8 is written with \\xNN, and the output is valid JSON."""
    rec = record("caf\udce9.pdf")
    body = signed(rec, [dict(OUTPUTS[0], path="caf\udce9.pdf")], **common(rec))
    data = json.loads(body.decode("utf-8"))
    assert data["source"] == "caf\\xe9.pdf"
    assert data["outputs"][0]["path"] == "caf\\xe9.pdf"


def test_registered_secrets_never_appear() -> None:
    """A secret registered with REDACTOR is masked in error messages and anywhere else."""
    secret = "sk-" + secrets.token_hex(16)
    REDACTOR.add(secret)
    rec = record(f"in/{secret}.pdf")
    body = sidecar.failed(rec, "auth", f"401 Unauthorized: api key {secret} refused", 1,
                          f"in/{secret}.pdf", **{**common(rec), "node": f"node-{secret}"})
    assert secret.encode() not in body
    data = json.loads(body)
    assert data["error"]["message"] == "401 Unauthorized: api key *** refused"
    signed_body = signed(rec, [dict(OUTPUTS[0], path=f"in/{secret}.pdf")],
                                 **common(rec))
    assert secret.encode() not in signed_body


def test_output_is_utf8_json_ending_in_a_newline() -> None:
    """The sidecar is UTF-8 (non-ASCII kept readable) and ends with a newline."""
    rec = record("Rechnung für März.pdf")
    body = signed(rec, OUTPUTS, **common(rec))
    assert body.endswith(b"\n")
    assert "Rechnung für März.pdf".encode() in body


RECEIPT = {"asset_id": "5f0c1d2e-aaaa-bbbb-cccc-0123456789ab", "checksum": "a" * 64,
           "txid": "9" * 64, "url": "https://clevver.org/tx/" + "9" * 64,
           "forever_url": "https://forever.example/" + "9" * 64,
           "stored_on": "2026-11-22T10:05:00Z", "updated_at": "2026-11-22T10:05:01Z",
           "duplicate": False}


def stored(**result: Any) -> FileRecord:
    """A file a storing provider (Clevver) delivered: the original, with a receipt; its
    result as it comes back from the store."""
    outcome = DocumentResult(
        entry="0000_invoice.pdf", provider_document=RECEIPT["asset_id"],
        outputs=(Output(role="original", staged="", suffix="", sha256="a" * 64,
                        bytes=48213),),
        provider_block={"receipt": RECEIPT}, **result)
    return dataclasses.replace(record(), result=DocumentResult.from_json(outcome.to_json()))


def fields(rec: FileRecord, outcome: str, end: str = "delivered") -> dict[str, Any]:
    return {**common(rec), "provider_name": "proof", "provider_kind": "clevver",
            "document": RECEIPT["asset_id"],
            "steps": sidecar.timeline(rec, batch_record(), HISTORY, (end, T0 + 9), outcome=outcome)}


def test_a_stored_file_has_the_providers_outcome_and_its_receipt() -> None:
    """A storing provider's sidecar: status "stored", the original listed as the only
    output, and the receipt inside "provider" beside name, kind, batch and document."""
    rec = stored()
    original = [{"path": "2026/11/invoice.pdf", "role": "original", "sha256": "a" * 64,
                 "bytes": 48213, "n": 0}]
    data = json.loads(sidecar.delivered(rec, original, outcome="stored",
                                        **fields(rec, "stored")))
    assert data["status"] == "stored"
    assert data["outputs"] == [{"path": "2026/11/invoice.pdf", "role": "original",
                                "sha256": "a" * 64, "bytes": 48213}]
    assert data["provider"] == {"name": "proof", "kind": "clevver", "batch": "2123",
                                "document": RECEIPT["asset_id"], "receipt": RECEIPT}
    assert data["signer"] is None


def test_the_finished_step_is_named_by_the_outcome_and_delivered_ends_it() -> None:
    """The step at which the provider finished is named by its outcome (stored, loaded);
    every delivered file's timeline ends with "delivered"."""
    assert steps_of(HISTORY, "delivered", outcome="stored") == [
        "seen", "claimed", "batched", "submitted", "accepted", "stored", "downloaded",
        "delivered"]
    assert "loaded" in steps_of(HISTORY, "delivered", outcome="loaded")
    assert "signed" not in steps_of(HISTORY, "delivered", outcome="stored")
    rejected = [*HISTORY[:5], file("REJECTED", T0 + 7.6), HISTORY[-1]]
    assert "stored" not in steps_of(rejected, outcome="stored")


def test_a_provider_block_cannot_replace_what_folderseal_records() -> None:
    """The provider's block adds to "provider"; its own name, kind, batch or document
    keys do not replace folderseal's."""
    rec = stored(error_code="")
    rec = dataclasses.replace(rec, result=dataclasses.replace(
        rec.result, provider_block={"receipt": RECEIPT, "kind": "x", "batch": "y"}))
    data = json.loads(sidecar.delivered(rec, OUTPUTS, outcome="stored",
                                        **fields(rec, "stored")))
    assert data["provider"]["kind"] == "clevver" and data["provider"]["batch"] == "2123"
    assert data["provider"]["receipt"] == RECEIPT


def test_an_error_record_carries_the_providers_block_redacted() -> None:
    """A file that failed with a receipt (its checksum wrong) keeps the receipt in its
    error record; a secret inside it (a URL with a key) is masked."""
    secret = "tok-" + secrets.token_hex(16)
    REDACTOR.add(secret)
    receipt = {**RECEIPT, "checksum": "e" * 64, "url": f"https://x.example/?k={secret}"}
    rec = stored(error_code="checksum_mismatch", error_message="not the file sent")
    rec = dataclasses.replace(rec, result=dataclasses.replace(
        rec.result, provider_block={"receipt": receipt}))
    body = sidecar.failed(rec, "checksum_mismatch", "not the file sent", 1,
                          "2026/11/invoice.pdf", **fields(rec, "stored", "failed"))
    assert secret.encode() not in body
    data = json.loads(body)
    assert data["status"] == "failed"
    assert data["provider"]["receipt"]["checksum"] == "e" * 64
    assert data["provider"]["receipt"]["url"] == "https://x.example/?k=***"


def test_a_result_keeps_its_provider_block_and_pending_through_the_store() -> None:
    """provider_block and pending survive to_json/from_json; a result stored before they
    existed loads with none and not pending."""
    result = DocumentResult(entry="e", provider_block={"receipt": RECEIPT}, pending=True,
                            error_code="no_receipt", error_message="no txid yet")
    again = DocumentResult.from_json(result.to_json())
    assert again == result and not again.ok
    old = json.dumps({"entry": "e", "outputs": [], "error_code": "", "error_message": ""})
    loaded = DocumentResult.from_json(old)
    assert loaded.provider_block == {} and loaded.pending is False and loaded.ok


def test_a_files_own_history_gives_the_timeline_the_whole_history_gives() -> None:
    """Publishing reads, for each file, only the batch's transitions and that file's own
    events (BatchContext.history_of), in their order: each file's timeline is the one the
    whole history gives, whatever the other files went through (one rejected and put
    back by a retry, one rejected for good)."""
    from folderseal.publish.folders import BatchContext

    history = [batch("CREATED", T0 + 3), file("REJECTED", T0 + 3.2, "f3"),
               batch("UPLOADED", T0 + 4), file("REJECTED", T0 + 4.1, "f2"),
               batch("ACCEPTING", T0 + 5), file("BATCHED", T0 + 5.5, "f2"),
               batch("ACCEPTING", T0 + 6), batch("ACCEPTED", T0 + 6.5), batch("CLOSED", T0 + 7),
               file("READY", T0 + 7.5), file("READY", T0 + 7.6, "f2"),
               batch("DOWNLOADED", T0 + 8)]
    ctx = BatchContext(batch=batch_record(), provider_name="p", provider_kind="local",
                       outcome="signed", batch_files=3, history=history)
    timelines = set()
    for file_id in ("f1", "f2", "f3", "f4"):
        rec = dataclasses.replace(record(), id=file_id)
        own = ctx.history_of(file_id)
        assert own == [e for e in history if e.file_id in (None, file_id)]
        whole = sidecar.timeline(rec, batch_record(), history, ("delivered", T0 + 9),
                                 outcome="signed")
        assert sidecar.timeline(rec, batch_record(), own, ("delivered", T0 + 9),
                                outcome="signed") == whole
        timelines.add(tuple(s["step"] for s in whole))
    assert len(timelines) == 3  # the files' histories differ, and so do their timelines
