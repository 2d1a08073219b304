"""``folderseal verify PATH...``: check outputs against their sidecars and signatures.

PATH may be an output, its sidecar, or a folder (every sidecar below it). For each
sidecar: every output it lists must exist beside it with the recorded size and
sha256; a signed PDF must carry a valid signature covering the whole file; a
detached signature must be valid over the original and carry the CAdES
signing-certificate attribute; and the signature must have been made with the
certificate the sidecar's ``signer`` names (its SHA-256 fingerprint; sidecars written
before ``signer`` existed have none to compare). Trust in the certificate is not
judged (a trial seal is self-signed); integrity, coverage and the signer are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from folderseal import files
from folderseal.engine import verify_detached, verify_pdf
from folderseal.errors import ExitCode
from folderseal.sidecar import SCHEMA


def sidecars(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.json")
                            if not p.name.endswith(".error.json") and p.is_file())
        elif path.name.endswith(".json"):
            found.append(path)
        else:
            primary = path.with_name(path.name.removesuffix(".p7s"))
            found.append(primary.with_name(primary.name + ".json"))
    return found


def _locate(sidecar: Path, output: dict[str, Any], primary: Path) -> Path:
    """An output beside its sidecar (by the recorded name, or by role from the primary)."""
    named = sidecar.with_name(Path(output["path"]).name)
    if named.exists():
        return named
    if output["role"] in ("signed", "original"):
        return primary
    return primary.with_name(primary.name + Path(output["path"]).suffix)


def check_sidecar(sidecar: Path) -> list[str]:
    """Problems with one sidecar and its outputs ([] if all is well)."""
    try:
        data = json.loads(sidecar.read_bytes())
    except (OSError, ValueError) as exc:
        return [f"cannot read the sidecar: {exc}"]
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return ["not a folderseal sidecar"]
    if data.get("status") != "signed":
        return [f"status is {data.get('status')!r}, not 'signed'"]
    primary = sidecar.with_name(sidecar.name.removesuffix(".json"))
    problems: list[str] = []
    located: dict[str, Path] = {}
    for output in data.get("outputs", []):
        path = _locate(sidecar, output, primary)
        located[output["role"]] = path
        try:
            digest, size = files.hash_path(path)
        except OSError as exc:
            problems.append(f"{output['role']} output {path.name}: {exc.strerror}")
            continue
        if (digest, size) != (output["sha256"], output["bytes"]):
            problems.append(f"{output['role']} output {path.name} does not match its sidecar "
                            f"(sha256 {digest[:12]}…, {size} bytes)")
    if problems:
        return problems
    verdicts = []
    if "signed" in located and located["signed"].name.lower().endswith(".pdf"):
        verdicts.append(verify_pdf(located["signed"]))
    if "signature" in located and "original" in located:
        verdicts.append(verify_detached(located["original"], located["signature"]))
        original = data.get("input", {}).get("sha256")
        if original and files.hash_path(located["original"])[0] != original:
            problems.append("the original does not match the sidecar's input hash")
    signer = data.get("signer")
    recorded = signer.get("fingerprint_sha256") if isinstance(signer, dict) else None
    for verdict in verdicts:
        if not verdict.ok:
            problems.append(verdict.detail)
        elif recorded and verdict.fingerprint != recorded:
            problems.append(f"signed with the certificate {verdict.fingerprint[:16]}…, not the "
                            f"one its sidecar records ({recorded[:16]}…): the output or the "
                            "sidecar was replaced")
    return problems


def verify_paths(paths: list[Path]) -> int:
    found = sidecars(paths)
    if not found:
        print("no sidecars found")
        return ExitCode.FAILURE
    failures = 0
    for sidecar in found:
        problems = check_sidecar(sidecar)
        target = sidecar.with_name(sidecar.name.removesuffix(".json"))
        if problems:
            failures += 1
            for problem in problems:
                print(f"FAILED {target}: {problem}")
        else:
            print(f"ok     {target}")
    print(f"{len(found) - failures} of {len(found)} verified")
    return ExitCode.FAILURE if failures else ExitCode.OK
