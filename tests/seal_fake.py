"""A scripted, in-memory SEAL for ``httpx.MockTransport``: unit tests of the adapter.

It keeps batches like SEAL (an upload ADDS documents, so a second upload shows up as
duplicates), answers with the documented quirks, and can be told to misbehave on a
given call: ``fake.script("upload", "timeout-after")`` makes the next upload do its
work and then time out, as a lost answer would. Every call is recorded.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

import httpx

from folderseal.providers.seal.client import IMPOSSIBLE_BATCH


@dataclass
class FakeBatch:
    id: int
    status: str = "NEW"
    documents: list[dict[str, Any]] = field(default_factory=list)
    contents: dict[str, bytes] = field(default_factory=dict)
    polls_until_closed: int = 2


class FakeSealApi:
    def __init__(self, *, key: str = "", header: str = "API-KEY") -> None:
        self.key = key
        self.header = header
        self.batches: dict[int, FakeBatch] = {}
        self.next_id = 2123
        self.calls: list[tuple[str, str]] = []       # (operation, batch id)
        self.scripts: dict[str, list[str]] = {}
        self.package_override: bytes | None = None
        self.fail_documents: set[str] = set()
        # Why a failed document was not signed, in a field SEAL does not document.
        self.fail_reasons: dict[str, str] = {}

    def script(self, operation: str, *actions: str) -> None:
        """Queue misbehaviour for the next calls of ``operation``."""
        self.scripts.setdefault(operation, []).extend(actions)

    def count(self, operation: str, batch: int | str | None = None) -> int:
        return sum(1 for op, b in self.calls
                   if op == operation and (batch is None or b == str(batch)))

    # -- httpx.MockTransport handler ---------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.key and request.headers.get(self.header) != self.key:
            return httpx.Response(401, json={"error": "invalid API key"})
        parts = request.url.path.strip("/").split("/")
        operation, batch_id = self._route(request, parts)
        self.calls.append((operation, str(batch_id) if batch_id is not None else ""))
        action = self.scripts.get(operation, [None]).pop(0) if self.scripts.get(operation) \
            else None
        if action == "500-before":
            return httpx.Response(500, text="internal error")
        if action == "429":
            return httpx.Response(429, headers={"Retry-After": "7"}, text="slow down")
        if action == "400":
            return httpx.Response(400, json={"error": f"bad request, key {self.key}"})
        if action == "nonsense":
            return httpx.Response(200, text="<html>proxy error</html>")
        response = self._do(operation, batch_id, request)
        if action == "500-after":
            return httpx.Response(500, text="internal error after the work")
        if action == "timeout-after":
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    def _route(self, request: httpx.Request, parts: list[str]) -> tuple[str, int | None]:
        name = parts[1] if len(parts) > 1 else ""
        tail = parts[2] if len(parts) > 2 else None
        if name == "AcceptBatch":
            value: Any = tail or request.url.params.get("batchId")
            if value is None and request.content:
                value = json.loads(request.content).get("batchId")
            return "accept", int(value) if value is not None else None
        operations = {"CreateBatch": "create", "upload": "upload", "BatchStatus": "status",
                      "batchfile": "download", "BatchDeleteCache": "delete"}
        batch_id = int(tail) if tail and tail.isdigit() else None
        if name == "BatchStatus" and tail == IMPOSSIBLE_BATCH:
            # The daemon's start-up check: not a call of any batch, so it takes no
            # scripted misbehaviour and is not counted as a status call.
            return "probe", batch_id
        return operations.get(name, name), batch_id

    def _do(self, operation: str, batch_id: int | None, request: httpx.Request
            ) -> httpx.Response:
        if operation == "create":
            batch = FakeBatch(self.next_id)
            self.batches[batch.id] = batch
            self.next_id += 1
            return httpx.Response(201, json={"id": str(batch.id), "providerSettingsId": "1",
                                             "creationDate": "2026-01-01 12:00:00",
                                             "status": "0"})
        batch = self.batches.get(batch_id or -1)
        if batch is None:
            return httpx.Response(404, text="not found")
        if operation == "upload":
            with zipfile.ZipFile(io.BytesIO(request.read())) as package:
                for info in package.infolist():
                    number = str(len(batch.documents) + 1)
                    batch.documents.append({"id": number, "signed": "false",
                                            "fileName": info.filename,
                                            "signingResult_Success": "false"})
                    batch.contents[info.filename] = package.read(info)
            batch.status = "UPLOADED"
            return httpx.Response(202, json={"id": "1", "name": batch.documents[0]["fileName"],
                                             "signed": "false", "batchId": batch.id})
        if operation == "accept":
            if batch.status != "UPLOADED":
                return httpx.Response(409, json={"error": "not uploaded"})
            batch.status = "ACCEPTED"
            return httpx.Response(202, json={"id": batch.id, "status": 0})
        if operation == "status":
            if batch.status in ("ACCEPTED", "IN_PROGRESS"):
                batch.polls_until_closed -= 1
                batch.status = "IN_PROGRESS" if batch.polls_until_closed > 0 else "CLOSED"
                if batch.status == "CLOSED":
                    for document in batch.documents:
                        ok = document["fileName"] not in self.fail_documents
                        document["signed"] = document["signingResult_Success"] = \
                            "true" if ok else "false"
                        if document["fileName"] in self.fail_reasons:
                            document["signingResult_Message"] = \
                                self.fail_reasons[document["fileName"]]
            return httpx.Response(200, json={"id": batch.id, "status": batch.status,
                                             "creationDate": "2026-01-01 12:00:00",
                                             "documents": batch.documents})
        if operation == "download":
            if batch.status != "CLOSED":
                return httpx.Response(404, text="not closed")
            body = self.package_override or self._package(batch)
            return httpx.Response(200, content=body,
                                  headers={"Content-Type": "application/octet-stream"})
        if operation == "delete":
            batch.status = "DELETED"
            return httpx.Response(200, json={"id": batch.id, "status": "DELETED",
                                             "documents": batch.documents})
        return httpx.Response(404, text="no such endpoint")

    def _package(self, batch: FakeBatch) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as package:
            for name, data in batch.contents.items():
                if name in self.fail_documents:
                    continue
                package.writestr(name, b"SIGNED:" + data)
        return buffer.getvalue()
