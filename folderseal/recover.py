"""``folderseal recover``: make the work folders usable again after the store was lost.

When the store is lost or replaced, the daemon refuses to start (it cannot know what
the files in the work folder went through). ``recover`` settles each file there:

* ``incoming/<claim>/…``: never sent anywhere; left for the daemon, which registers
  unknown claims at start;
* ``batches/<batch>/<entry>`` the store does not know: if a sidecar in the outbox
  names that batch and the file's sha256, the file was delivered, and the original is
  archived or deleted as the daemon would have; otherwise, with the local provider, it
  goes back into its inbox (at the path a sidecar or error record gives, else under
  its entry name), to be taken again: a file is published once for the local
  provider, and a sidecar proves publication, so nothing is sealed twice. With a
  remote provider the batch may have been accepted: the file goes to the errors
  folder with a record saying to check with the provider first;
* the marker is rewritten with this store's id.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from folderseal import files, statelock
from folderseal.config import FolderConfig, Settings
from folderseal.errors import ExitCode
from folderseal.sidecar import SCHEMA
from folderseal.store import Store
from folderseal.workdir import MARKER, WorkFolder


def _records(root: Path | None, suffix: str) -> dict[tuple[str, str], str]:
    """(batch id, input sha256) → source, from every sidecar or error record below root."""
    found: dict[tuple[str, str], str] = {}
    if root is None or not root.is_dir():
        return found
    for path in root.rglob(f"*{suffix}"):
        try:
            data = json.loads(path.read_bytes())
            found[(data["batch"]["id"], data["input"]["sha256"])] = data["source"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _safe_source(source: str | None) -> str:
    """A source path from a record, if it stays inside its folder ("" if not)."""
    if not source or source.startswith("/") or ".." in source.split("/"):
        return ""
    return source


def _recover_batch(cfg: FolderConfig, folder: Path, delivered: dict[tuple[str, str], str],
                   failed: dict[tuple[str, str], str], remote: str) -> tuple[int, int]:
    """Settle one unknown batch: (originals removed or archived, files back or held).

    With a remote provider (``remote`` names it) a file without a sidecar may still
    have been signed: it goes to errors with a record saying so, never to the inbox.
    """
    removed = returned = 0
    for entry in sorted(os.listdir(folder)):
        path = folder / entry
        digest, _ = files.hash_path(path)
        key = (folder.name, digest)
        if key in delivered:
            if cfg.archive is not None:
                files.move_numbered(path, cfg.archive / (_safe_source(delivered[key]) or entry))
            else:
                path.unlink()
            removed += 1
        else:
            source = _safe_source(failed.get(key)) or re.sub(r"^\d{4}_", "", entry)
            if remote:
                _hold(cfg, path, source, digest, folder.name, remote)
            else:
                files.move_numbered(path, cfg.inbox / source)
            returned += 1
    folder.rmdir()
    return removed, returned


def _hold(cfg: FolderConfig, path: Path, source: str, digest: str, batch: str,
          provider: str) -> None:
    """A file of a lost remote batch: to errors, with a record that says to check first."""
    target = files.move_numbered(path, cfg.errors / source)
    record = {"schema": SCHEMA, "status": "failed", "folder": "", "source": source,
              "input": {"sha256": digest, "bytes": target.stat().st_size}, "outputs": [],
              "batch": {"id": batch}, "provider": {"name": provider},
              "error": {"code": "store_lost", "attempts": 0, "original": str(target),
                        "message": f"the store was lost while this file was in batch {batch} "
                                   f"of provider {provider}; it may have been signed: check "
                                   "with the provider, then drop it into the inbox again"}}
    files.write_new(target.parent, target.name + ".error.json",
                    (json.dumps(record, indent=2) + "\n").encode(), cfg.file_mode)


def recover(settings: Settings) -> int:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    lock = statelock.acquire(settings.state_dir)  # never beside a running daemon
    store = Store.open(settings.state_dir, settings.node_name)
    try:
        store_id, known = store.store_id, store.job_ids()
        for name, cfg in settings.folders.items():
            work = WorkFolder(cfg.work_folder, name)
            if not work.path.is_dir():
                continue
            unknown = [b for b in work.batch_ids() if b not in known]
            delivered = _records(cfg.outbox, ".json") if unknown else {}
            failed = _records(cfg.errors, ".error.json") if unknown else {}
            remote = "" if settings.providers[cfg.provider].kind == "local" else cfg.provider
            for batch_id in unknown:
                removed, returned = _recover_batch(cfg, work.batch_dir(batch_id), delivered,
                                                   failed, remote)
                shutil.rmtree(settings.state_dir / "downloads" / batch_id, ignore_errors=True)
                where = "in errors, to check with the provider" if remote else "back in the inbox"
                print(f"folder {name}, batch {batch_id}: {removed} delivered before (original "
                      f"{'archived' if cfg.archive else 'removed'}), {returned} {where}")
            if work.owner() != store_id:
                tmp = work.path / f".{MARKER}.tmp"
                tmp.write_text(f"{store_id}\n", encoding="ascii")
                os.replace(tmp, work.marker)
                files.fsync_dir(work.path)
                print(f"folder {name}: the work folder now belongs to store {store_id}")
        print("recovered; start the daemon again")
        return ExitCode.OK
    finally:
        store.close()
        os.close(lock)
