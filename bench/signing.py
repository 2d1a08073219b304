"""Signing engine speed: stock pyHanko vs folderseal.signing, on the same generated files.

Run from the repository root: ``.venv/bin/python bench/signing.py [-n 200]``.
Prints ms/file for (a) stock pyHanko (``SimpleSigner.load_pkcs12`` once, then
``signers.sign_pdf`` per file), (b) ``folderseal.signing.sign_pdf`` and (c)
``folderseal.signing.sign_detached`` on 100 KB files. All in this one process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter  # noqa: E402
from pyhanko.sign import fields, signers  # noqa: E402

from folderseal.signing import (  # noqa: E402
    Credentials,
    make_trial_seal,
    sign_detached,
    sign_pdf,
    verify_detached,
    verify_pdf,
)
from tests.pdfs import make_pdf  # noqa: E402


def _timed(files: list[Path], one: Callable[[Path], None]) -> list[float]:
    one(files[0])  # warm-up: imports, caches and first-call costs are not per-file costs
    times = []
    for path in files:
        start = time.perf_counter()
        one(path)
        times.append((time.perf_counter() - start) * 1000)
    return times


def _report(label: str, times: list[float]) -> None:
    mean = statistics.fmean(times)
    median = statistics.median(times)
    p95 = sorted(times)[int(len(times) * 0.95) - 1]
    print(f"{label:<48} {mean:7.2f} ms/file  (median {median:.2f}, p95 {p95:.2f}, n={len(times)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="files per case (default 200)")
    n = parser.parse_args().n

    with tempfile.TemporaryDirectory(prefix="folderseal-bench-") as tmp:
        work = Path(tmp)
        trial = make_trial_seal(work / "seal")
        password = trial.password()
        pdfs = []
        for i in range(n):
            path = work / f"doc{i:04d}.pdf"
            make_pdf(path, pages=1, text=f"benchmark document {i}")
            pdfs.append(path)
        blobs = []
        for i in range(n):
            path = work / f"blob{i:04d}.bin"
            path.write_bytes(os.urandom(100 * 1024))
            blobs.append(path)
        out = work / "out"
        out.mkdir()

        stock = signers.SimpleSigner.load_pkcs12(str(trial.pkcs12_path), passphrase=password)
        meta = signers.PdfSignatureMetadata(
            field_name="Seal", md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES
        )

        def stock_one(path: Path) -> None:
            with path.open("rb") as src, (out / f"stock-{path.name}").open("w+b") as dst:
                writer = IncrementalPdfFileWriter(src, strict=False)
                signers.sign_pdf(writer, meta, signer=stock, output=dst)

        credentials = Credentials.from_pkcs12(trial.pkcs12_path, password)

        def ours_one(path: Path) -> None:
            with path.open("rb") as src, (out / f"ours-{path.name}").open("w+b") as dst:
                sign_pdf(credentials, src, dst)

        def detached_one(path: Path) -> None:
            with path.open("rb") as src:
                signature = sign_detached(credentials, src)
            (out / f"{path.name}.p7s").write_bytes(signature.der)

        print(f"python {sys.version.split()[0]}, RSA-2048 trial seal, {n} files per case")
        _report("(a) stock pyHanko sign_pdf, 1-page PDF", _timed(pdfs, stock_one))
        _report("(b) folderseal sign_pdf, 1-page PDF", _timed(pdfs, ours_one))
        _report("(c) folderseal sign_detached, 100 KB file", _timed(blobs, detached_one))

        # The figures mean nothing if the outputs are wrong: check one of each.
        for verdict in (
            verify_pdf(out / f"stock-{pdfs[-1].name}"),
            verify_pdf(out / f"ours-{pdfs[-1].name}"),
            verify_detached(blobs[-1], out / f"{blobs[-1].name}.p7s"),
        ):
            if not verdict.ok:
                raise SystemExit(f"output check failed: {verdict.detail}")
        print("outputs checked: one stock PDF, one folderseal PDF, one detached signature")


if __name__ == "__main__":
    main()
