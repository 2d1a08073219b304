"""``folderseal recover`` (folderseal.service.recover.settle) on the in-memory store, with a
real work folder, outbox and errors folder in a temp folder and the scripted provider
(tests/scripted.py).

Each batch is taken as far as the test says by the state machine on one store, which is
then lost: recover settles the work folder against a new, empty one, as the module's
docstring promises, and says what it did. Where the batch goes on, the state machine
on the new store finishes it, sending nothing twice.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from folderseal.core import config
from folderseal.core.config import Settings
from folderseal.core.errors import TransientError
from folderseal.core.model import BatchState, FileState
from folderseal.providers import Steps
from folderseal.publish.folders import BatchContext
from folderseal.service.recover import settle
from folderseal.store.memory import MemoryStore
from tests.batch_parts import Parts, batched, build, drive
from tests.scripted import LOST, SIGNED, Scripted

FILES = {"a.txt": b"page a\n", "sub/b.txt": b"page b\n"}
KINDS = {"clevver": 'base_url = "http://127.0.0.1:9"\nauth = "none"',
         "local": 'certificate = "seal.p12"'}


@pytest.fixture
def parts(tmp_path: Path, debug_log: io.StringIO) -> Parts:
    """The parts; logs go to ``debug_log``, so that what is printed is recover's alone."""
    return build(tmp_path)


def _settings(parts: Parts, kind: str = "clevver") -> Settings:
    """The configuration recover reads: folder "scans" in the parts' folders."""
    path = parts.root / "config.toml"
    path.write_text(f'state_dir = "state"\nnode = "node-a"\n\n[providers.{parts.provider.name}]\n'
                    f'kind = "{kind}"\n{KINDS[kind]}\n\n[folders.scans]\ninbox = "inbox"\n'
                    f'outbox = "outbox"\nerrors = "errors"\nprovider = "{parts.provider.name}"\n')
    return config.load(path)


def _recover(parts: Parts, capsys: pytest.CaptureFixture[str], kind: str = "clevver",
             ) -> tuple[int, list[str], MemoryStore]:
    """Lose the store; recover into a new one: the exit code, the lines printed, the store."""
    store = MemoryStore("node-a", clock=parts.clock, state_dir=parts.state_dir)
    capsys.readouterr()
    code = settle(_settings(parts, kind), store, lambda name: parts.provider)
    return code, capsys.readouterr().out.splitlines(), store


def _stop_after(parts: Parts, step: str, outcome: Callable[[], object] | None = None) -> None:
    """One turn of the batch, ended by the stop event at the first ``step`` call."""
    def stop() -> None:
        parts.stop.set()
        if outcome is not None:
            outcome()

    parts.provider.script[step] = [stop]
    assert parts.machine.run_once()
    parts.stop.clear()


def _state(store: MemoryStore, batch_id: str) -> BatchState | None:
    batch = store.batch(batch_id)
    return None if batch is None else batch.state


def _error_codes(parts: Parts) -> dict[str, str]:
    records = (json.loads(p.read_bytes()) for p in parts.cfg.errors.rglob("*.error.json"))
    return {r["source"]: r["error"]["code"] for r in records}


def _finished(store: MemoryStore) -> list[str]:
    """What recover prints last when every batch was settled."""
    return [f"folder scans: the work folder now belongs to store {store.store_id}",
            "recovered; start the daemon again"]


def test_a_batch_delivered_before_the_store_was_lost_is_finished(
        parts: Parts, capsys: pytest.CaptureFixture[str]) -> None:
    """Its sidecars name the batch and each file's sha256: the originals are removed (as
    the daemon would have), the batch folder with them, and nothing is recorded."""
    batch_id, _ = batched(parts, FILES)
    _stop_after(parts, "download")
    assert parts.store.acquire_batch() is not None
    records = parts.store.files_of_batch(batch_id)
    parts.sink.deliver(records, BatchContext(
        batch=parts.store.batch(batch_id), provider_name="remote", provider_kind="scripted",
        outcome="signed", batch_files=2, history=parts.store.batch_history(batch_id)),
        keep_lease=lambda: None)

    code, lines, store = _recover(parts, capsys)

    assert code == 0
    assert lines == [f"folder scans, batch {batch_id}: 2 delivered before (original removed); "
                     "nothing left", *_finished(store)]
    assert not parts.work.batch_dir(batch_id).exists()
    assert store.batch(batch_id) is None
    assert (parts.cfg.outbox / "sub/b.txt").read_bytes() == SIGNED + FILES["sub/b.txt"]
    assert parts.work.owner() == store.store_id


def test_a_batch_never_sent_anywhere_goes_back_into_the_inbox(
        parts: Parts, capsys: pytest.CaptureFixture[str]) -> None:
    """No remote batch id in its manifest: nothing was ever uploaded, so each file goes
    back to its place in the inbox, to be taken again."""
    batch_id, _ = batched(parts, FILES)

    code, lines, store = _recover(parts, capsys)

    assert code == 0
    assert lines[0] == (f"folder scans, batch {batch_id}: 0 delivered before (original "
                        "removed); 2 back in the inbox (never sent to a provider)")
    assert lines[1:] == _finished(store)
    for source, data in FILES.items():
        assert (parts.cfg.inbox / source).read_bytes() == data
    assert store.batch(batch_id) is None and not parts.work.batch_dir(batch_id).exists()
    assert parts.provider.calls == []


def test_without_remote_batches_undelivered_files_go_back_whatever_step_was_reached(
        tmp_path: Path, debug_log: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    """A provider that keeps no remote batch (the local signer) publishes once, which a
    sidecar proves: a file without one goes back into the inbox; it is never asked."""
    parts = build(tmp_path, Scripted("local", steps=Steps(remote=False, irrevocable=False)))
    batch_id, _ = batched(parts, FILES)
    _stop_after(parts, "download")
    calls = len(parts.provider.calls)

    code, lines, _ = _recover(parts, capsys, kind="local")

    assert code == 0 and "2 back in the inbox (never sent to a provider)" in lines[0]
    assert sorted(p.name for p in parts.cfg.inbox.rglob("*.txt")) == ["a.txt", "b.txt"]
    assert len(parts.provider.calls) == calls


def test_a_started_remote_batch_is_recorded_accepted_and_never_accepted_again(
        parts: Parts, capsys: pytest.CaptureFixture[str]) -> None:
    """The provider shows it started (its accept's answer was lost): ACCEPTED, with each
    document's answer from the manifest; the daemon polls, downloads and delivers it."""
    parts.provider.script["accept"] = [LOST]
    parts.provider.running_polls = 1  # recover's status; the daemon's first poll closes it
    batch_id, ids = batched(parts, FILES)
    assert parts.machine.run_once()

    code, lines, store = _recover(parts, capsys)

    assert code == 0
    assert lines[0].endswith("2 recorded again as ACCEPTED (remote batch r1 is running); the "
                             "daemon goes on")
    batch = store.batch(batch_id)
    assert batch is not None and (batch.state, batch.remote_id) == (BatchState.ACCEPTED, "r1")
    assert {f: n["batch"] for f, n in store.remote_documents(batch_id).items()} == {
        ids["a.txt"]: "r1", ids["sub/b.txt"]: "r1"}
    drive(parts, parts.machine_on(store))
    assert _state(store, batch_id) == BatchState.CLEANED
    assert parts.provider.called("accept") == ["r1"]
    assert (parts.cfg.outbox / "a.txt").read_bytes() == SIGNED + FILES["a.txt"]


def test_a_complete_upload_is_recorded_accepting_and_kept(
        parts: Parts, capsys: pytest.CaptureFixture[str]) -> None:
    """Every file answered for r1, which holds exactly them: accept may have been sent,
    so the batch is ACCEPTING (the daemon asks before accepting); r1 is not deleted."""
    batch_id, _ = batched(parts, FILES)
    _stop_after(parts, "upload")

    code, lines, store = _recover(parts, capsys)

    assert code == 0 and "2 recorded again as ACCEPTING (remote batch r1 holds the upload" \
        in lines[0]
    batch = store.batch(batch_id)
    assert batch is not None and (batch.state, batch.remote_id) == (BatchState.ACCEPTING, "r1")
    assert parts.provider.called("delete") == []


def test_an_upload_in_doubt_is_abandoned_and_the_batch_starts_afresh(
        parts: Parts, capsys: pytest.CaptureFixture[str]) -> None:
    """A send whose answer was lost: r1 was never accepted (only a complete upload is),
    so it is deleted and the batch recorded as new; the daemon sends it to r2."""
    parts.provider.script["upload"] = [LOST]
    batch_id, _ = batched(parts, FILES)
    assert parts.machine.run_once()

    code, lines, store = _recover(parts, capsys)

    assert code == 0 and lines[0].endswith(
        "2 recorded again as BATCHED (remote batch r1 was never accepted); the daemon goes on")
    assert parts.provider.called("delete") == ["r1"]
    drive(parts, parts.machine_on(store))
    assert _state(store, batch_id) == BatchState.CLEANED
    assert parts.provider.called("accept") == ["r2"]
    assert parts.provider.sent_to("r2") == ["0001_a.txt", "0002_b.txt"]


def test_files_of_a_remote_batch_the_provider_lost_go_to_errors_to_be_checked(
        parts: Parts, capsys: pytest.CaptureFixture[str]) -> None:
    """Gone, and not every file answered there: whether it was started cannot be told;
    the files go to errors with a record saying they may have been signed."""
    parts.provider.script["upload"] = [LOST]
    batch_id, _ = batched(parts, FILES)
    assert parts.machine.run_once()
    parts.provider.remotes.clear()

    code, lines, store = _recover(parts, capsys)

    assert code == 0 and lines[0].endswith(
        "2 in errors, to check with the provider (the provider no longer knows remote "
        "batch r1 (not found))")
    assert _error_codes(parts) == {"a.txt": "store_lost", "sub/b.txt": "store_lost"}
    record = json.loads((parts.cfg.errors / "a.txt.error.json").read_bytes())
    assert "may have been signed: check with the provider" in record["error"]["message"]
    assert (parts.cfg.errors / "a.txt").read_bytes() == FILES["a.txt"]
    assert store.batch(batch_id) is None


def test_a_file_the_provider_rejected_goes_to_errors_with_its_reason(
        parts: Parts, capsys: pytest.CaptureFixture[str]) -> None:
    parts.provider.rejects = {"0001_a.txt": ("checksum_mismatch", "not what was sent")}
    batch_id, ids = batched(parts, FILES)
    _stop_after(parts, "upload")

    code, lines, store = _recover(parts, capsys)

    assert code == 0 and "; 1 rejected by the provider, in errors; 1 recorded again as " \
        "ACCEPTING" in lines[0]
    assert _error_codes(parts) == {"a.txt": "checksum_mismatch"}
    assert [r.id for r in store.files_of_batch(batch_id)] == [ids["sub/b.txt"]]
    assert {r.state for r in store.files_of_batch(batch_id)} == {FileState.BATCHED}


def test_a_batch_whose_provider_cannot_be_asked_is_left_and_recover_fails(
        parts: Parts, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing is decided without the provider's answer: the batch stays as it is, the
    command says to run it again, and ends with exit 1."""
    batch_id, _ = batched(parts, FILES)
    _stop_after(parts, "upload")
    parts.provider.script["status"] = [TransientError("connection refused (scripted)")]

    code, lines, store = _recover(parts, capsys)

    assert code == 1
    assert lines[0] == (f"folder scans, batch {batch_id}: left as it is: the provider could "
                        "not be asked (connection refused (scripted)); run 'folderseal "
                        "recover' again later")
    assert lines[-1] == ("not all recovered: the daemon refuses to start until every batch "
                         "is settled")
    assert store.batch(batch_id) is None
    assert sorted(p.name for p in parts.work.batch_dir(batch_id).iterdir()
                  if not p.name.startswith(".note-")) == [
        ".batch.json", "0001_a.txt", "0002_b.txt"]
