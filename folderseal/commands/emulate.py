"""``folderseal emulate <provider>``: a local server that speaks a provider's API, for
trials and tests (the emulators are in each provider's package)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from folderseal.commands.shared import Handler

if TYPE_CHECKING:
    from folderseal.commands.shared import Subparsers


def add_parser(commands: Subparsers) -> None:
    emulate = commands.add_parser(
        "emulate", help="run a local emulator of a provider's API (for trials and tests)",
        description="Run a local server that speaks a provider's API (SEAL signs with the "
                    "local signer), optionally injecting faults, with a journal of what it did.")
    emulated = emulate.add_subparsers(dest="provider", required=True, metavar="PROVIDER")
    seal = _emulator(emulated, "seal", emulate_seal, "the Signius SEAL batch API",
                     "require this API-KEY header", "500-before=0.1,429=0.2,drop=0.05",
                     "folder for batches and journal")
    seal.add_argument("--step-delay", type=float, default=0.2,
                      help="seconds per status step after accept")
    seal.add_argument("--lag", type=float, default=0.0,
                      help="seconds before an upload or accept shows in BatchStatus (a server "
                           "that processes them asynchronously)")
    seal.add_argument("--latency", type=float, default=0.0,
                      help="seconds every API call waits before it is served (a distant "
                           "server, for benchmarks)")
    clevver = _emulator(emulated, "clevver", emulate_clevver,
                        "the Clevver batch storage API",
                        "require this token as Authorization: Bearer",
                        "500-before=0.1,429=0.2,drop=0.05,late-txid=0.1",
                        "folder for stored files and journal")
    clevver.add_argument("--polls", type=int, default=3,
                         help="status reads from start to delivered")
    clevver.add_argument("--late-seconds", type=float, default=3.0,
                         help="how late a 'late-start' takes effect and a 'late-txid' shows")
    centrapay = _emulator(emulated, "centrapay", emulate_centrapay,
                          "the Centrapay batch API (it fetches each batch file from its URL)",
                          "require this X-Api-Key header",
                          "500-before=0.1,500-after=0.05,drop=0.05,bad-url=0.1,late-403=0.2",
                          "folder for the journal")
    centrapay.add_argument("--step-seconds", type=float, default=0.2,
                           help="least seconds between two status steps of a fetched batch "
                                "(each status read moves it at most one step)")
    centrapay.add_argument("--late-seconds", type=float, default=2.0,
                           help="how long a 'late-403' batch answers 403 after its create")
    centrapay.add_argument("--rate-limit", type=int, default=200,
                           help="requests a minute before 429 with Retry-After (0: no limit)")
    centrapay.add_argument("--workers", type=int, default=4,
                           help="batch files fetched at the same time")


def _emulator(emulated: Subparsers, name: str, handler: Handler, text: str, key_help: str,
              faults_example: str, data_help: str) -> argparse.ArgumentParser:
    """The parser of `folderseal emulate <name>` with the options every emulator has."""
    sub = emulated.add_parser(name, help=text)
    sub.add_argument("--host", default="127.0.0.1")
    sub.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    sub.add_argument("--api-key", default=None, help=key_help)
    sub.add_argument("--faults", default="", metavar="SPEC",
                     help=f"e.g. {faults_example} (see README)")
    sub.add_argument("--data", type=Path, default=None,
                     help=f"{data_help}, kept (default: a temporary folder, removed when the "
                          f"emulator stops)")
    sub.add_argument("--seed", type=int, default=None, help="seed for fault decisions")
    sub.add_argument("--slow-seconds", type=float, default=5.0,
                     help="how long a 'slow' answer waits")
    sub.set_defaults(handler=handler)
    return sub


def emulate_seal(args: argparse.Namespace) -> int:
    from folderseal.providers.seal.emulator import run_seal

    return run_seal(host=args.host, port=args.port, api_key=args.api_key, faults=args.faults,
                    data_dir=args.data, seed=args.seed, step_delay=args.step_delay,
                    slow_seconds=args.slow_seconds, lag=args.lag, latency=args.latency)


def emulate_clevver(args: argparse.Namespace) -> int:
    from folderseal.providers.clevver.emulator import run_clevver

    return run_clevver(host=args.host, port=args.port, api_key=args.api_key,
                       faults=args.faults, data_dir=args.data, seed=args.seed,
                       polls=args.polls, late_seconds=args.late_seconds,
                       slow_seconds=args.slow_seconds)


def emulate_centrapay(args: argparse.Namespace) -> int:
    from folderseal.providers.centrapay.emulator import run_centrapay

    return run_centrapay(host=args.host, port=args.port, api_key=args.api_key,
                         faults=args.faults, data_dir=args.data, seed=args.seed,
                         step_seconds=args.step_seconds, late_seconds=args.late_seconds,
                         slow_seconds=args.slow_seconds, rate_limit=args.rate_limit,
                         workers=args.workers)
