"""The emulator's HTTP side: Clevver's endpoints, its bearer token, its envelopes (and
their ``quirky`` variants), the multipart upload of a file, and the public links that
serve the stored bytes."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from folderseal.providers.clevver.emulator.batches import Registry, asset_json
from folderseal.providers.emulation.httpd import ApiError, EmulatorApp, EmulatorHandler, Reply
from folderseal.providers.emulation.journal import log_event
from folderseal.providers.emulation.multipart import CHUNK, BadMultipart, Multipart


@dataclass(kw_only=True)
class ClevverApp(EmulatorApp):
    """What the Clevver request handlers share."""

    registry: Registry


def _quirky(data: Any) -> Any:
    """Numbers the docs show as numbers, as strings; an extra field in each object."""
    if isinstance(data, list):
        return [_quirky(item) for item in data]
    if not isinstance(data, dict):
        return data
    changed = {k: str(v) if k in ("progress", "file_size") and v is not None else v
               for k, v in data.items()}
    changed["emulator_note"] = "an extra field a client must ignore"
    return changed


class ClevverHandler(EmulatorHandler):
    """Clevver's endpoints."""

    server_version = "ClevverEmulator/1.0"

    @property
    def app(self) -> ClevverApp:
        app: ClevverApp = self.server.app  # type: ignore[assignment]
        return app

    def error(self, status: int, message: str, **headers: str) -> Reply:
        return Reply(status, {"status": "error", "message": message}, dict(headers))

    def authorized(self) -> bool:
        key = self.app.api_key
        if key is None:
            return True
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8"), key.encode("utf-8"))

    def unauthorized(self) -> Reply:
        return self.error(401, "Unauthenticated: send Authorization: Bearer <api token>",
                          **{"WWW-Authenticate": 'Bearer realm="Clevver"'})

    def envelope(self, status: int, data: Any, message: str | None = None,
                 inside: bool = True) -> Reply:
        """``{"status": "success", "data": …}`` with the message where the docs put it,
        or, under the ``quirky`` fault, elsewhere and with strings for numbers."""
        payload: dict[str, Any] = {"status": "success"}
        if self.app.faults.draw("quirky"):
            self.note_fault("quirky")
            data, inside = _quirky(data), not inside
            payload["meta"] = {"request_id": str(uuid.uuid4())}
        if message is not None and inside and isinstance(data, dict):
            data = {**data, "message": message}
        elif message is not None:
            payload = {"message": message, **payload}
        return Reply(status, {**payload, "data": data})

    def base_url(self) -> str:
        return f"http://{self.headers.get('Host') or 'localhost'}"

    # --- endpoints --------------------------------------------------------------

    def list_batches(self, arg: str | None, query: dict[str, str]) -> Reply:
        return self.envelope(200, self.app.registry.active())

    def create_batch(self, arg: str | None, query: dict[str, str]) -> Reply:
        return self.envelope(201, self.app.registry.create(), "Batch created successfully")

    def attach(self, arg: str | None, query: dict[str, str]) -> Reply:
        registry = self.app.registry
        registry.check_attachable(arg)  # before reading a byte of a refused upload
        temp = registry.incoming / f"{uuid.uuid4()}.part"
        try:
            received = self._receive(temp)
            if received is None:
                raise ApiError(422, 'the form has no "file" field; send the file as "file"')
            name, checksum, size = received
            asset = registry.add_asset(str(arg), name, temp, checksum, size)
        except BadMultipart as exc:
            raise ApiError(400, str(exc)) from None
        finally:
            temp.unlink(missing_ok=True)  # renamed away when stored
        log_event("emulator.asset", batch=arg, asset=asset.id, bytes=size,
                  duplicate=asset.duplicate)
        return self.envelope(200, asset_json(asset, self.base_url(), "created", False),
                             "Asset successfully uploaded", inside=False)

    def _receive(self, temp: Path) -> tuple[str, str, int] | None:
        """Write the form's ``file`` part to ``temp``: its name, sha256 and size."""
        form = Multipart(self.body, self.headers.get("Content-Type"))
        received = None
        while (part := form.next_part()) is not None:
            if part.name != "file" or received is not None:
                continue  # other fields (and a second file) are skipped unread
            digest, size = hashlib.sha256(), 0
            with temp.open("wb") as out:
                while piece := form.read(CHUNK):
                    digest.update(piece)
                    size += len(piece)
                    out.write(piece)
            name = re.split(r"[\\/]", part.filename or "")[-1] or "file"
            received = (name, digest.hexdigest(), size)
        return received

    def start(self, arg: str | None, query: dict[str, str]) -> Reply:
        return self.envelope(200, self.app.registry.start(arg), "Job batch started")

    def batch_status(self, arg: str | None, query: dict[str, str]) -> Reply:
        return self.envelope(200, self.app.registry.poll(arg))

    def receipt(self, arg: str | None, query: dict[str, str]) -> Reply:
        return self.envelope(200, self.app.registry.receipt(arg, self.base_url()))

    def file_link(self, arg: str | None, query: dict[str, str]) -> Reply:
        return _file_reply(self.app.registry.stored_file(arg, None))

    def forever_link(self, arg: str | None, query: dict[str, str]) -> Reply:
        return _file_reply(self.app.registry.stored_file(None, arg))


def _file_reply(path: Path) -> Reply:
    file = path.open("rb")
    return Reply(200, file=file, size=os.fstat(file.fileno()).st_size)


ClevverHandler.routes = [
    ("GET", re.compile(r"/api/batches"), ClevverHandler.list_batches),
    ("POST", re.compile(r"/api/batches"), ClevverHandler.create_batch),
    ("POST", re.compile(r"/api/batches/([^/]+)/files"), ClevverHandler.attach),
    ("POST", re.compile(r"/api/batches/([^/]+)/start"), ClevverHandler.start),
    ("GET", re.compile(r"/api/batches/([^/]+)"), ClevverHandler.batch_status),
    ("GET", re.compile(r"/api/files/([^/]+)"), ClevverHandler.receipt),
    ("GET", re.compile(r"/uploads/digital_asset/file/([^/]+)/[^/]*"), ClevverHandler.file_link),
    ("GET", re.compile(r"/forever/([0-9a-f]{64})"), ClevverHandler.forever_link),
]
ClevverHandler.public = frozenset({"file_link", "forever_link"})
