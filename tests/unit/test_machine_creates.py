"""The state machine for a provider whose accept creates the remote batch and whose
create publishes the file (Centrapay's shape), against a scripted provider and a real
store: a lost create answer is never sent again (outcome_unknown), a call that never
left goes back before the point of no return, a batch unknown just after its create is
waited for, a file refused by prepare sends nothing, and what was published is removed
(at once after delivery; max_wait after an outcome_unknown)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from folderseal.core import config
from folderseal.core.configbase import ProviderSection
from folderseal.core.errors import NotSent, TransientError
from folderseal.core.model import BatchState
from folderseal.providers import BatchView, Ledger, Remote, RemoteStatus, Steps
from folderseal.providers.local.provider import LocalProvider
from folderseal.service.daemon import Daemon
from folderseal.service.recover import _Folder
from folderseal.service.startchecks import tidy_published
from folderseal.store import Store
from folderseal.store.sqlite import SqliteStore
from tests.helpers import Layout, error_records
from tests.provider_parts import Built
from tests.unit.test_machine import _delivered, _errors, _run


def _records(layout: Layout) -> dict[str, dict[str, Any]]:
    return {(record := json.loads(path.read_text()))["source"]: record
            for path in error_records(layout.errors)}


def _key(number: int) -> str:
    """The publish key of the ``number``-th copy: as long and unguessable-looking as a
    served folder's name (logs show a fingerprint of it)."""
    return f"k{number}-" + "0123456789abcdef" * 2


K1 = _key(1)


class Publishing(LocalProvider):
    """Publishes in create, creates the remote batch in accept; signs like the local one."""

    steps = Steps(remote=True, irrevocable=True, outcome="loaded", accept_creates=True,
                  publishes=True, not_sent=frozenset({"load_failed", "invalid_batch_file"}))

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.published: list[str] = []
        self.removed: list[str] = []
        self.creates = 0                  # create calls that reached the "provider"
        self.answer: list[str] = []       # scripted create outcomes: lost | not_sent | ok
        self.unknown_for = 0              # status answers GONE this many times first
        self.refuse = False               # prepare rejects every file
        self.running = False              # status answers RUNNING for ever
        self.asked = 0                    # status calls for a created batch
        self.max_wait = 3600.0

    def prepare(self, batch: BatchView, ledger: Ledger) -> None:
        if self.refuse:
            for document in batch.documents:
                ledger.reject(document, "invalid_batch_file", "line 0: not a JSON object",
                              {"report": {"status": "invalid", "errorCount": 1}})

    def create(self, batch: BatchView, ledger: Ledger) -> str:
        key = _key(len(self.published) + 1)
        ledger.publishing(key)
        self.published.append(key)
        return ""

    def status(self, batch: BatchView, remote_id: str) -> RemoteStatus:
        if not remote_id:
            return RemoteStatus(Remote.UPLOADED)
        self.asked += 1
        if self.unknown_for:
            self.unknown_for -= 1
            return RemoteStatus(Remote.GONE, detail="403")
        if self.running:
            return RemoteStatus(Remote.RUNNING)
        for _ in range(200):  # answer once the signing is done: one poll closes it
            status = super().status(batch, remote_id)
            if status.state == Remote.CLOSED:
                break
            time.sleep(0.05)
        return status

    def holds_upload(self, batch: BatchView, status: RemoteStatus) -> bool:
        return status.state == Remote.UPLOADED

    def accept(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        if remote_id:  # never asked to create twice
            raise AssertionError(f"accept again for {remote_id}")
        outcome = self.answer.pop(0) if self.answer else "ok"
        if outcome == "not_sent":
            raise NotSent("connection refused (scripted)")
        for document in batch.documents:
            ledger.sending(document, "")
        self.creates += 1
        if outcome == "lost":
            raise TransientError("the connection dropped after the create was sent (scripted)")
        ledger.created(f"c{self.creates}")
        super().accept(batch, remote_id, ledger)

    def delete(self, batch: BatchView, remote_id: str) -> None:
        self.removed.append(batch.published)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path)
    layout.write()
    return layout


def _daemon(layout: Layout, grace: float = 0.0,
            make: Callable[[str, ProviderSection, Path], Publishing] = Publishing
            ) -> tuple[Daemon, Publishing]:
    """A prepared daemon whose provider ``make`` built (a new :class:`Publishing`)."""
    built = Built(make)
    daemon = Daemon(config.load(layout.config), delay=lambda attempts: 0.0,
                    build_provider=built)
    daemon.prepare()
    provider = built.only()
    provider.status_grace = grace
    provider.poll_interval = 0.05
    return daemon, provider


def test_a_file_is_published_created_once_and_unpublished_after_delivery(layout: Layout
                                                                         ) -> None:
    daemon, provider = _daemon(layout)
    try:
        batch_id, _ = _run(daemon, layout, ("a.txt",))
        store = daemon.store
        assert store is not None
        batch = store.batch(batch_id)
        assert batch.state == BatchState.CLEANED and batch.remote_id == "c1"
        assert provider.creates == 1 and provider.published == [K1]
        assert provider.removed == [K1] and batch.publish_key is None
        assert _delivered(layout) == {"a.txt"}
    finally:
        daemon.close()


def _failed(daemon: Daemon, layout: Layout, name: str) -> str:
    """Drop ``name`` and drive its batch until it failed and its file is in errors."""
    (layout.inbox / name).write_text(f"content of {name}")
    intake = daemon.intakes["scans"]
    intake.claim_now(name)
    [batch_id] = intake.form_batches(float("inf"))
    store = daemon.store
    assert store is not None
    daemon.drain(lambda: store.batch(batch_id).state == BatchState.FAILED
                 and (layout.errors / name).exists(), 30)
    return batch_id


def test_a_lost_create_answer_is_outcome_unknown_and_never_created_again(layout: Layout
                                                                         ) -> None:
    daemon, provider = _daemon(layout)
    provider.answer = ["lost"]
    try:
        batch_id = _failed(daemon, layout, "a.txt")
        store = daemon.store
        assert store is not None
        batch = store.batch(batch_id)
        assert provider.creates == 1
        assert batch.state == BatchState.FAILED and batch.error_code == "outcome_unknown"
        error = _errors(layout)["a.txt"]
        assert error["code"] == "outcome_unknown"
        assert "may have been loaded" in error["message"]
        assert "look for a batch created at this time" in error["message"]
        assert "--force" in error["message"]
        # The message (stored, logged, shown by status) names a fingerprint of the key;
        # the error record names it whole.
        assert f"published as {K1[:8]}…" in error["message"] and K1 not in error["message"]
        assert _records(layout)["a.txt"]["provider"]["published"] == K1
        # The published copy stays for max_wait (a fetch may still come), then goes.
        assert provider.removed == [] and batch.publish_key == K1
        assert batch.next_attempt_at is not None
        provider.max_wait = 0.0
        with sqlite3.connect(store.path) as db:  # its time has come
            db.execute("UPDATE batches SET next_attempt_at = 0 WHERE id = ?", (batch_id,))
        daemon.drain(lambda: store.batch(batch_id).next_attempt_at is None, 30)
        assert provider.removed == [K1] and store.batch(batch_id).publish_key is None
    finally:
        daemon.close()


def test_tidy_after_start_reads_the_keys_to_keep_after_listing(layout: Layout) -> None:
    """The daemon hands tidy the store's reader, not a set read beforehand: a key
    recorded while the provider lists is kept."""
    seen: list[set[str]] = []

    class PublishedWhileListing(Publishing):
        def tidy(self, keep: Callable[[], set[str]]) -> int:
            assert callable(keep)
            before = keep()
            batch_id, _ = _run(daemon, layout, ("a.txt",))   # a batch publishes meanwhile…
            store = daemon.store
            assert store is not None
            with sqlite3.connect(store.path) as db:     # …and still names its copy
                db.execute("UPDATE batches SET publish_key = ? WHERE id = ?", (K1, batch_id))
            seen.extend([before, keep()])
            return 0

    daemon, _ = _daemon(layout, make=PublishedWhileListing)
    try:
        assert daemon.store is not None
        tidy_published(daemon.store.connect(), daemon.providers, daemon.log)
    finally:
        daemon.close()
    assert seen == [set(), {K1}]


def test_logs_name_a_fingerprint_of_the_published_key(layout: Layout) -> None:
    """The outcome_unknown failure and an unpublish that failed log the key's
    fingerprint, never the key (with publish_url_prefix, a read key to the records)."""
    deletes = 0

    class UnpublishFailsOnce(Publishing):
        def delete(self, batch: BatchView, remote_id: str) -> None:
            nonlocal deletes
            deletes += 1
            if deletes == 1:
                raise TransientError("the publish folder is read-only (scripted)")
            super().delete(batch, remote_id)

    daemon, provider = _daemon(layout, make=UnpublishFailsOnce)
    provider.answer = ["lost"]
    try:
        with structlog.testing.capture_logs() as logs:
            batch_id = _failed(daemon, layout, "a.txt")
            store = daemon.store
            assert store is not None
            provider.max_wait = 0.0
            with sqlite3.connect(store.path) as db:  # its time has come
                db.execute("UPDATE batches SET next_attempt_at = 0 WHERE id = ?", (batch_id,))
            daemon.drain(lambda: deletes == 1, 30)
            with sqlite3.connect(store.path) as db:  # and again
                db.execute("UPDATE batches SET next_attempt_at = 0 WHERE id = ?", (batch_id,))
            daemon.drain(lambda: store.batch(batch_id).publish_key is None, 30)
    finally:
        daemon.close()
    shown = json.dumps(logs, default=str)
    assert K1 not in shown
    events = {e["event"]: e for e in logs}
    assert f"published as {K1[:8]}…" in events["batch.failed"]["reason"]
    assert events["batch.unpublish_failed"]["key"] == f"{K1[:8]}…"
    assert provider.removed == [K1]


def test_a_create_that_never_left_goes_back_and_is_sent_later(layout: Layout) -> None:
    daemon, provider = _daemon(layout)
    provider.answer = ["not_sent", "ok"]
    try:
        batch_id, _ = _run(daemon, layout, ("a.txt",))
        store = daemon.store
        assert store is not None
        assert store.batch(batch_id).state == BatchState.CLEANED
        assert provider.creates == 1 and _delivered(layout) == {"a.txt"}
        moves = [to for to, _ in store.batch_transitions(batch_id)]
        assert moves.count(BatchState.ACCEPTING) == 2 and BatchState.UPLOADED in moves
    finally:
        daemon.close()


def test_a_batch_unknown_just_after_its_create_is_waited_for(layout: Layout) -> None:
    daemon, provider = _daemon(layout, grace=30.0)
    provider.unknown_for = 2
    try:
        batch_id, _ = _run(daemon, layout, ("a.txt",))
        assert daemon.store is not None
        assert daemon.store.batch(batch_id).state == BatchState.CLEANED
        assert provider.unknown_for == 0 and _delivered(layout) == {"a.txt"}
    finally:
        daemon.close()


def test_a_batch_unknown_after_the_grace_is_outcome_unknown(layout: Layout) -> None:
    daemon, provider = _daemon(layout, grace=0.0)
    provider.unknown_for = 1000
    try:
        batch_id = _failed(daemon, layout, "a.txt")
        assert daemon.store is not None
        assert daemon.store.batch(batch_id).error_code == "outcome_unknown"
        assert _errors(layout)["a.txt"]["code"] == "outcome_unknown"
        assert provider.creates == 1
    finally:
        daemon.close()


def test_a_file_prepare_refuses_is_never_published_or_sent(layout: Layout) -> None:
    daemon, provider = _daemon(layout)
    provider.refuse = True
    try:
        _run(daemon, layout, ("a.txt",))
        assert provider.published == [] and provider.creates == 0
        assert _errors(layout)["a.txt"]["code"] == "invalid_batch_file"
    finally:
        daemon.close()


def _stopped(layout: Layout, answer: str) -> tuple[str, Publishing]:
    """Drive a file until its create fails once (``answer``), then lose the store."""
    built = Built(Publishing)
    daemon = Daemon(config.load(layout.config), delay=lambda attempts: 3600.0,
                    build_provider=built)
    daemon.prepare()
    provider = built.only()
    provider.retry_max_seconds = 3600.0
    provider.answer = [answer]
    try:
        (layout.inbox / "a.txt").write_text("content of a.txt")
        intake = daemon.intakes["scans"]
        intake.claim_now("a.txt")
        [batch_id] = intake.form_batches(float("inf"))
        store = daemon.store
        assert store is not None
        daemon.drain(lambda: store.batch(batch_id).attempts > 0, 30)
    finally:
        daemon.close()
    for path in layout.state.glob("folderseal.sqlite*"):
        path.unlink()
    return batch_id, provider


def _recovered(layout: Layout, provider: Publishing, batch_id: str) -> tuple[str, Store]:
    settings = config.load(layout.config)
    store = SqliteStore.open(settings.state_dir, settings.node_name)
    folder = _Folder("scans", settings.folders["scans"], settings, store, provider)
    return folder.batch(batch_id), store


def test_recover_keeps_a_create_in_doubt_at_accepting_with_its_publish_key(layout: Layout
                                                                           ) -> None:
    batch_id, provider = _stopped(layout, "lost")
    outcome, store = _recovered(layout, provider, batch_id)
    try:
        batch = store.batch(batch_id)
        assert batch is not None and batch.state == BatchState.ACCEPTING, outcome
        assert batch.remote_id is None and batch.publish_key == K1
        assert not (layout.inbox / "a.txt").exists()
    finally:
        store.close()


def test_recover_puts_a_file_whose_create_never_left_back_into_the_inbox(layout: Layout
                                                                         ) -> None:
    batch_id, provider = _stopped(layout, "not_sent")
    outcome, store = _recovered(layout, provider, batch_id)
    try:
        assert store.batch(batch_id) is None, outcome
        assert (layout.inbox / "a.txt").read_text() == "content of a.txt"
    finally:
        store.close()


def test_a_poll_that_waited_past_max_wait_is_judged_by_the_answer(layout: Layout) -> None:
    """A batch whose first poll comes after max_wait (a busy daemon, a spent request
    budget) is asked once more: finished, it is delivered, not failed as never_closed."""
    daemon, provider = _daemon(layout)
    provider.max_wait = 0.0
    try:
        batch_id, _ = _run(daemon, layout, ("a.txt",))
        assert daemon.store is not None
        assert daemon.store.batch(batch_id).state == BatchState.CLEANED
        assert provider.asked == 1 and _delivered(layout) == {"a.txt"}
    finally:
        daemon.close()


def test_a_batch_still_running_after_max_wait_never_closed(layout: Layout) -> None:
    daemon, provider = _daemon(layout)
    provider.max_wait = 0.0
    provider.running = True
    try:
        batch_id = _failed(daemon, layout, "a.txt")
        assert daemon.store is not None
        assert daemon.store.batch(batch_id).error_code == "never_closed"
        assert provider.asked == 1 and provider.creates == 1
    finally:
        daemon.close()
