"""``folderseal verify PATH...``: check outputs against their sidecars and signatures.

PATH may be an output, its sidecar, or a folder (every sidecar below it). For each
sidecar of a delivered file (status signed, stored or loaded): every output it lists
must exist beside it with the recorded size and sha256, and an original must be the
input it records; a signed PDF must carry a valid signature covering the whole file; a
detached signature must be valid over the original and carry the CAdES
signing-certificate attribute; and the signature must have been made with the
certificate the sidecar's ``signer`` names (its SHA-256 fingerprint; sidecars written
before ``signer`` existed have none to compare). Trust in the certificate is not
judged (a trial seal is self-signed); integrity, coverage and the signer are.

A provider's receipt (``provider.receipt``) with a checksum must name the file: the
original's sha256 equals it. What the receipt points to (a transaction on a chain) is
not looked at from here: verify says so, and where to look.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from folderseal import signing  # its names load pyHanko when first used, not here
from folderseal.commands.shared import add_command
from folderseal.core import files
from folderseal.core.errors import ExitCode
from folderseal.publish.sidecar import OUTCOMES, SCHEMA

if TYPE_CHECKING:
    from folderseal.commands.shared import Subparsers


def add_parser(commands: Subparsers) -> None:
    verify = add_command(commands, "verify", handle, "check outputs against their sidecars "
                         "and signatures", config=False)
    verify.add_argument("paths", nargs="+", metavar="PATH",
                        help="outputs, sidecars, or folders holding them")


def handle(args: argparse.Namespace) -> int:
    return verify_paths([Path(p) for p in args.paths])


@dataclass(frozen=True, slots=True)
class Checked:
    """What verify found about one sidecar."""

    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)   # and where to check it


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


def check_sidecar(sidecar: Path) -> Checked:
    """Problems with one sidecar and its outputs (none if all is well), and what could
    not be checked from here."""
    try:
        data = json.loads(sidecar.read_bytes())
    except (OSError, ValueError) as exc:
        return Checked([f"cannot read the sidecar: {exc}"])
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return Checked(["not a folderseal sidecar"])
    if data.get("status") not in OUTCOMES:
        return Checked([f"status is {data.get('status')!r}, not a delivered file's "
                        f"({', '.join(OUTCOMES)})"])
    primary = sidecar.with_name(sidecar.name.removesuffix(".json"))
    problems: list[str] = []
    located: dict[str, Path] = {}
    digests: dict[str, str] = {}
    for output in data.get("outputs", []):
        path = _locate(sidecar, output, primary)
        located[output["role"]] = path
        try:
            digest, size = files.hash_path(path)
        except OSError as exc:
            problems.append(f"{output['role']} output {path.name}: {exc.strerror}")
            continue
        digests[output["role"]] = digest
        if (digest, size) != (output["sha256"], output["bytes"]):
            problems.append(f"{output['role']} output {path.name} does not match its sidecar "
                            f"(sha256 {digest[:12]}…, {size} bytes)")
    original = data.get("input", {}).get("sha256")
    if "original" in digests and original and digests["original"] != original:
        problems.append("the original does not match the sidecar's input hash")
    receipt = _receipt(data)
    problems += _receipt_problems(receipt, located, digests)
    unchecked = _unchecked(receipt)
    if problems:
        return Checked(problems, unchecked)
    verdicts = []
    if "signed" in located and located["signed"].name.lower().endswith(".pdf"):
        verdicts.append(signing.verify_pdf(located["signed"]))
    if "signature" in located and "original" in located:
        verdicts.append(signing.verify_detached(located["original"], located["signature"]))
    signer = data.get("signer")
    recorded = signer.get("fingerprint_sha256") if isinstance(signer, dict) else None
    for verdict in verdicts:
        if not verdict.ok:
            problems.append(verdict.detail)
        elif recorded and verdict.fingerprint != recorded:
            problems.append(f"signed with the certificate {verdict.fingerprint[:16]}…, not the "
                            f"one its sidecar records ({recorded[:16]}…): the output or the "
                            "sidecar was replaced")
    return Checked(problems, unchecked)


def _receipt(data: dict[str, Any]) -> dict[str, Any]:
    provider = data.get("provider")
    receipt = provider.get("receipt") if isinstance(provider, dict) else None
    return receipt if isinstance(receipt, dict) else {}


def _receipt_problems(receipt: dict[str, Any], located: dict[str, Path],
                      digests: dict[str, str]) -> list[str]:
    """The receipt's checksum against the file it is for: the original (or else the
    primary output)."""
    checksum = receipt.get("checksum")
    role = "original" if "original" in located else next(iter(located), "")
    if not checksum or role not in digests:
        return []  # no checksum to compare, or the file could not be read (said above)
    if digests[role] == str(checksum).lower():
        return []
    asset = f" {receipt['asset_id']}" if receipt.get("asset_id") else ""
    return [f"{role} output {located[role].name} has sha256 {digests[role]}, but its "
            f"provider's receipt says {checksum}: this is not the file the provider "
            f"stored, or the sidecar was changed; ask the provider for its record of"
            f"{asset or ' this file'} to tell which"]


def _unchecked(receipt: dict[str, Any]) -> list[str]:
    if not receipt:
        return []
    txid = receipt.get("txid")
    where = receipt.get("url") or receipt.get("forever_url")
    if not txid:
        return ["the receipt has no transaction id: nothing on a chain to look up; ask "
                "the provider about this file"]
    look = f" at {where}" if where else " with the provider"
    return [f"not checked from here: that the chain holds this file; look up "
            f"transaction {txid}{look}"]


def verify_paths(paths: list[Path]) -> int:
    found = sidecars(paths)
    if not found:
        print("no sidecars found")
        return ExitCode.FAILURE
    failures = 0
    for sidecar in found:
        checked = check_sidecar(sidecar)
        target = sidecar.with_name(sidecar.name.removesuffix(".json"))
        if checked.problems:
            failures += 1
            for problem in checked.problems:
                print(f"FAILED {target}: {problem}")
        else:
            print(f"ok     {target}")
        for what in checked.unchecked:
            print(f"note   {target}: {what}")
    print(f"{len(found) - failures} of {len(found)} verified")
    return ExitCode.FAILURE if failures else ExitCode.OK
