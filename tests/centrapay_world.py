"""Shared by the Centrapay acceptance tests, the torture scenarios and the benchmark:
batch files (JSON Lines and CSV, with bad lines if asked), a folder served over HTTP on
loopback (what ``publish = "folder"`` needs: a web server for publish_dir), the
provider's keys, the emulator journal's verdict on what the daemon did, and an
in-memory ledger for driving the provider's steps by hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import http.server
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from folderseal.providers import BatchView, Document

ACCOUNT = "C4QnjXvj8At6SMsEN4LRi9"
JSONL_TYPE = "farmlands-external-asset"
CSV_TYPE = "business-onboard"


def jsonl(tag: str, count: int, missing_id: tuple[int, ...] = (), width: int = 0) -> bytes:
    """``count`` records (distinct content per ``tag``); those at ``missing_id`` lack the
    externalId Centrapay needs (locally valid: Centrapay reports them)."""
    lines = []
    for i in range(count):
        record: dict[str, Any] = {"externalId": f"{tag}-{i}", "name": f"asset {i} of {tag}"}
        if width:
            record["pad"] = "x" * width
        if i in missing_id:
            del record["externalId"]
        lines.append(json.dumps(record))
    return ("\n".join(lines) + "\n").encode()


def csv_rows(tag: str, count: int) -> bytes:
    rows = ["externalId,name,region"] + [f"{tag}-{i},business {i},r{i % 5}"
                                         for i in range(count)]
    return ("\n".join(rows) + "\n").encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def names(url: str) -> tuple[str]:
    """How an error record names what was published at ``url``: its last part (the
    object key's last part, or the name in publish_dir, in ``provider.published``)."""
    return (url.rsplit("/", 1)[-1],)


class FakeLedger:
    """The state machine's ledger as a Centrapay batch uses it, in memory: what was rejected
    (by file id: code, message, provider block), published (keys) and created (remote
    ids), in order in ``log``; ``on_publishing`` (a key) runs before a key is noted."""

    def __init__(self) -> None:
        self.rejected: dict[str, tuple[str, str, dict[str, Any] | None]] = {}
        self.published: list[str] = []
        self.created_ids: list[str] = []
        self.log: list[str] = []
        self.on_publishing: Any = None

    def begin(self, documents: list[Document]) -> list[int]:
        return [d.attempts + 1 for d in documents]

    def forgive(self, documents: list[Document]) -> None:
        pass

    def stopping(self) -> bool:
        return False

    def sending(self, document: Document, remote_id: str) -> None:
        assert remote_id == ""   # a create about to be sent: there is no remote batch yet
        self.log.append("sending")

    def answered(self, document: Document, remote: Any) -> None:
        raise AssertionError("Centrapay sends no document")

    def reject(self, document: Document, code: str, message: str,
               block: dict[str, Any] | None = None) -> None:
        self.rejected[document.file_id] = (code, message, block)

    def publishing(self, key: str) -> None:
        if self.on_publishing is not None:
            self.on_publishing(key)
        self.published.append(key)
        self.log.append("publishing")

    def created(self, remote_id: str) -> None:
        self.created_ids.append(remote_id)
        self.log.append("created")

    def view(self, view: BatchView) -> BatchView:
        """The batch as the state machine would hand it next."""
        return dataclasses.replace(
            view, published=self.published[-1] if self.published else view.published,
            documents=tuple(d for d in view.documents if d.file_id not in self.rejected))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def served(folder: Path) -> Iterator[str]:
    """``folder`` served over HTTP on a free loopback port (a web server for
    publish_dir, as ``python -m http.server`` would); yields its URL, ending in /."""
    folder.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def provider_keys(base_url: str, key_file: str, batch_type: str = JSONL_TYPE,
                  **more: Any) -> dict[str, Any]:
    """A ``kind = "centrapay"`` provider table, quick to react (for tests)."""
    return {"kind": "centrapay", "base_url": base_url, "api_key_file": key_file,
            "account_id": ACCOUNT, "batch_type": batch_type, "poll_interval_seconds": 0.1,
            "timeout_seconds": 3.0, "status_grace_seconds": 2.5, "retry_max_seconds": 1.0,
            "max_wait_seconds": 20.0, "max_requests_per_minute": 6000, **more}


def folder_keys(publish_dir: Path, url: str) -> dict[str, Any]:
    return {"publish": "folder", "publish_dir": str(publish_dir), "publish_url_prefix": url}


AMBIGUOUS = {"500-before", "drop-before", "500-after", "drop"}   # the client cannot tell
LOST = {"500-after", "drop"}                # created, and its answer lost


def journal_verdict(journal: list[dict[str, Any]], delivered: dict[str, dict[str, Any]],
                    failed: dict[str, dict[str, Any]], crashed: bool = False) -> list[str]:
    """What the emulator's journal says against the daemon's outcomes (by the file's
    sha256: ``delivered`` sidecars and ``failed`` error records). Problems, [] if none:

    * a content loaded twice (the emulator's violation), or a url created twice;
    * a delivered file whose report is not what the emulator loaded for its batch;
    * ``outcome_unknown`` for a file none of whose creates met a fault that leaves the
      client in doubt (a 5xx or a cut connection), or a lost create answer that did not
      end as ``outcome_unknown`` for its file;
      (after a kill, ``crashed``, a create the kill interrupted is in doubt too);
    * ``load_failed`` for a batch the emulator did not fail (another code naming its
      remote batch, e.g. ``never_closed``, accounts for that batch's create);
    * a create the outcomes do not account for: a file created twice.
    """
    problems = [f"violation: {v.get('message')}" for v in journal
                if v.get("event") == "violation"]
    creates = {e["batch"]: e for e in journal if e.get("event") == "create"}
    urls = Counter(e["url"] for e in creates.values())
    problems += [f"url {u} created {n} times" for u, n in urls.items() if n > 1]
    fetched = {e["batch"]: e for e in journal if e.get("event") == "fetched"}
    errored = {e["batch"] for e in journal if e.get("event") == "error"}
    faults = [e for e in journal if e.get("event") == "create_fault"]
    doubtful = {n for e in faults if e.get("url") and AMBIGUOUS & set(e["kind"].split("+"))
                for n in names(e["url"])}
    lost = {e["batch"]: names(e["url"]) for e in faults
            if e["created"] and LOST & set(e["kind"].split("+"))}
    accounted: Counter[str] = Counter()
    for digest, sidecar in delivered.items():
        provider = sidecar["provider"]
        remote, report = provider.get("batch"), provider.get("report") or {}
        accounted[remote] += 1
        seen = fetched.get(remote)
        if seen is None:
            problems.append(f"{sidecar['source']}: delivered, but Centrapay never loaded "
                            f"batch {remote}")
            continue
        if seen["sha256"] != digest:
            problems.append(f"{sidecar['source']}: batch {remote} loaded other content")
        if (report.get("status"), report.get("count"), report.get("errorCount")) != \
                ("complete", seen["count"], seen["errorCount"]):
            problems.append(f"{sidecar['source']}: report {report} is not the journal's "
                            f"{seen}")
    unknown_text = " ".join(json.dumps(r) for r in failed.values()
                            if r["error"]["code"] == "outcome_unknown")
    for record in failed.values():
        code = record["error"]["code"]
        if code == "outcome_unknown":
            text = json.dumps(record)
            if not crashed and not any(name in text for name in doubtful):
                problems.append(f"{record['source']}: outcome_unknown, but none of its "
                                f"creates met a fault ({record['error']['message']})")
        else:   # a file of a batch created once: load_failed, never_closed…
            remote = record.get("provider", {}).get("batch") or ""
            if remote in creates:
                accounted[remote] += 1
            if code == "load_failed" and remote not in errored:
                problems.append(f"{record['source']}: load_failed, but batch {remote} "
                                "did not fail at Centrapay")
    for remote, shown in lost.items():
        if not any(name in unknown_text for name in shown):
            problems.append(f"batch {remote}: its create answer was lost, but no file "
                            "ended outcome_unknown for it")
        accounted[remote] += 1
    for remote, create in creates.items():   # in doubt, and so outcome_unknown
        if remote not in accounted and any(name in unknown_text
                                           for name in names(str(create["url"]))):
            accounted[remote] += 1
    problems += [f"batch {r}: accounted for {n} times" for r, n in accounted.items() if n > 1]
    problems += [f"batch {r} ({e['url']}) was created but no outcome names it: a file "
                 "created twice?" for r, e in creates.items() if r not in accounted]
    return problems


def published_names(journal: list[dict[str, Any]]) -> set[str]:
    """The last part of every URL a create named (a published name or object key)."""
    return {str(e["url"]).rsplit("/", 1)[-1] for e in journal
            if e.get("event") in ("create", "create_fault") and e.get("url")}
