"""``folderseal retry``: put failed files back into the pipeline.

With the ``local`` provider nothing has been published for a failed file ("signed
once" means "published once" for it), so a retry is safe at any step: the original
goes back from the errors folder into its inbox, at its relative path (with ``-N``
if that name is taken), where the daemon takes it like a new drop; its error
record is removed and the old claim is marked RETRIED. Ids are file ids or batch
ids (all failed files of the batch), as ``folderseal status`` shows them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from folderseal import files
from folderseal.config import Settings
from folderseal.errors import ExitCode
from folderseal.model import FileRecord, FileState
from folderseal.store import Store


def _original_in_errors(settings: Settings, record: FileRecord) -> Path | None:
    errors = settings.folders[record.folder].errors
    for output in record.outputs:
        if output.get("role") == "error":
            return errors / str(output["path"])
    return None


def _put_back(settings: Settings, record: FileRecord) -> Path:
    original = _original_in_errors(settings, record)
    if original is None or not os.path.lexists(original):
        raise FileNotFoundError(f"the original of {record.id} is not in the errors folder "
                                f"(looked for {original}); it was moved or removed")
    target = files.move_numbered(original, settings.folders[record.folder].inbox / record.source)
    (original.parent / (original.name + ".error.json")).unlink(missing_ok=True)
    return target


def retry(settings: Settings, ids: list[str] | None) -> int:
    store = Store.open(settings.state_dir, settings.node_name)
    try:
        failed = store.failed_files()
        code = ExitCode.OK
        if ids is not None:
            wanted = set(ids)
            failed = [r for r in failed if r.id in wanted or r.batch_id in wanted]
            for missing in sorted(wanted - {r.id for r in failed} - {r.batch_id for r in failed}):
                print(f"{missing}: no failed file or batch with this id", file=sys.stderr)
                code = ExitCode.FAILURE
        for record in failed:
            try:
                target = _put_back(settings, record)
            except OSError as exc:
                print(f"{record.id} {record.source_text}: not retried: {exc}", file=sys.stderr)
                code = ExitCode.FAILURE
                continue
            store.set_file_state(record.id, FileState.FAILED, FileState.RETRIED,
                                 detail=str(target))
            print(f"{record.id} {record.source_text}: back in the inbox as {target}")
        if not failed:
            print("nothing to retry")
        return code
    finally:
        store.close()
