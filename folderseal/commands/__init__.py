"""The ``folderseal`` command line.

Exit codes are data (:class:`ExitCode`): 0 ok, 1 failure, 2 usage, 78 configuration
error (systemd's ``RestartPreventExitStatus=78`` stops a restart loop on it). Every
message printed passes through the redactor.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from folderseal import __version__
from folderseal.core import config as configuration
from folderseal.core import logs, systemd
from folderseal.core.errors import ExitCode, FolderSealError
from folderseal.core.redact import REDACTOR
from folderseal.providers import registry  # noqa: F401  registers the kinds before any config is read

# What `init --service` writes unless told otherwise: what systemd/folderseal.service expects.
SERVICE_DEFAULTS = {"user": "folderseal", "drop_group": "folderseal-drop",
                    "state_dir": "/var/lib/folderseal",
                    "inbox": "/srv/folderseal/inbox", "outbox": "/srv/folderseal/outbox",
                    "errors": "/srv/folderseal/errors"}


def _settings(args: argparse.Namespace) -> configuration.Settings:
    settings = configuration.load(args.config)
    logs.configure(settings.log.format, settings.log.level)
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    from folderseal.service.daemon import Daemon

    daemon = Daemon(_settings(args), config_path=args.config or configuration.default_config_path())
    try:
        daemon.prepare()
    except BaseException:
        daemon.close()
        raise
    return daemon.run()


def cmd_sign(args: argparse.Namespace) -> int:
    from folderseal.commands.sign import sign_paths

    return sign_paths(_settings(args), [Path(p) for p in args.paths], timeout=args.timeout)


def cmd_status(args: argparse.Namespace) -> int:
    from folderseal.service.status import show

    settings = configuration.load(args.config)
    return show(settings, as_json=args.json)


def cmd_check(args: argparse.Namespace) -> int:
    from folderseal.commands.check import run_checks

    return run_checks(args.config)


def cmd_retry(args: argparse.Namespace) -> int:
    from folderseal.commands.retry import retry

    if not args.all and not args.ids:
        print("folderseal retry: give --all or one or more file or batch ids", file=sys.stderr)
        return ExitCode.USAGE
    if args.force and args.all:
        print("folderseal retry: --force sends files whose outcome is unknown again; name "
              "each by its id (never with --all)", file=sys.stderr)
        return ExitCode.USAGE
    return retry(_settings(args), None if args.all else args.ids, force=args.force)


def cmd_verify(args: argparse.Namespace) -> int:
    from folderseal.commands.verify import verify_paths

    return verify_paths([Path(p) for p in args.paths])


def cmd_init(args: argparse.Namespace) -> int:
    from folderseal.commands.init import ServiceLayout, init, init_service

    given = {k: getattr(args, k) for k in SERVICE_DEFAULTS if getattr(args, k) is not None}
    if not args.service:
        if given:
            print("folderseal init: --user, --drop-group, --state-dir, --inbox, --outbox and "
                  "--errors go with --service", file=sys.stderr)
            return ExitCode.USAGE
        return init(Path(args.dir or "."))
    chosen = SERVICE_DEFAULTS | given

    def folder(key: str) -> Path:
        return Path(chosen[key]).absolute()  # the config lives elsewhere: no relative paths

    return init_service(ServiceLayout(
        directory=Path(args.dir or "/etc/folderseal").absolute(), user=chosen["user"],
        drop_group=chosen["drop_group"], state_dir=folder("state_dir"),
        inbox=folder("inbox"), outbox=folder("outbox"), errors=folder("errors")))


def cmd_recover(args: argparse.Namespace) -> int:
    from folderseal.service.recover import recover

    return recover(_settings(args))


def cmd_emulate(args: argparse.Namespace) -> int:
    from folderseal.providers.seal.emulator import run_seal

    return run_seal(host=args.host, port=args.port, api_key=args.api_key, faults=args.faults,
                    data_dir=args.data, seed=args.seed, step_delay=args.step_delay,
                    slow_seconds=args.slow_seconds, lag=args.lag)


def cmd_emulate_clevver(args: argparse.Namespace) -> int:
    from folderseal.providers.clevver.emulator import run_clevver

    return run_clevver(host=args.host, port=args.port, api_key=args.api_key,
                       faults=args.faults, data_dir=args.data, seed=args.seed,
                       polls=args.polls, late_seconds=args.late_seconds,
                       slow_seconds=args.slow_seconds)


def cmd_emulate_centrapay(args: argparse.Namespace) -> int:
    from folderseal.providers.centrapay.emulator import run_centrapay

    return run_centrapay(host=args.host, port=args.port, api_key=args.api_key,
                         faults=args.faults, data_dir=args.data, seed=args.seed,
                         step_seconds=args.step_seconds, late_seconds=args.late_seconds,
                         slow_seconds=args.slow_seconds, rate_limit=args.rate_limit,
                         workers=args.workers)


def _emulator(emulated: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
              handler: Callable[[argparse.Namespace], int], text: str, key_help: str,
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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="folderseal",
        description="Watch folders and get every dropped file sealed, with a JSON record.")
    top.add_argument("--version", action="version", version=f"folderseal {__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str,
                config: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        if config:
            sub.add_argument("-c", "--config", type=Path, default=None,
                             help="configuration file (default: $FOLDERSEAL_CONFIG, then "
                                  "/etc/folderseal/config.toml)")
        sub.set_defaults(handler=handler)
        return sub

    command("run", cmd_run, "run the daemon in the foreground (SIGTERM stops it cleanly)")
    sign = command("sign", cmd_sign, "seal the given files now (they must lie in an inbox)")
    sign.add_argument("paths", nargs="+", metavar="PATH")
    sign.add_argument("--timeout", type=float, default=3600.0,
                      help="give up waiting after this many seconds (default 3600)")
    status = command("status", cmd_status, "what is waiting, in flight, failed, and why")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    command("check", cmd_check, "validate configuration, folders, permissions and providers")
    retry = command("retry", cmd_retry, "put failed files back (see docs/design.md)")
    retry.add_argument("--all", action="store_true", help="every failed file")
    retry.add_argument("ids", nargs="*", metavar="ID", help="file or batch ids")
    retry.add_argument("--force", action="store_true",
                       help="also send again the files named by their own id whose outcome "
                       "is unknown (outcome_unknown: the provider may have taken them and "
                       "cannot be asked; look first); never with --all")
    verify = command("verify", cmd_verify, "check outputs against their sidecars and "
                     "signatures", config=False)
    verify.add_argument("paths", nargs="+", metavar="PATH",
                        help="outputs, sidecars, or folders holding them")
    init = command("init", cmd_init, "write a starter configuration and a trial seal",
                   config=False)
    init.add_argument("dir", nargs="?", default=None, metavar="DIR",
                      help="where to write (default: the current folder; with --service "
                           "/etc/folderseal)")
    init.add_argument("--service", action="store_true",
                      help="as root, for the systemd unit: the store, the folders and the "
                           "seal owned and moded for the service user (see systemd/README.md)")
    init.add_argument("--user", help="with --service: the user the service runs as "
                                     "(default folderseal; it must exist)")
    init.add_argument("--drop-group", dest="drop_group", metavar="GROUP",
                      help="with --service: the group of the accounts that drop files, owning "
                           "the folders but not the configuration (default folderseal-drop; "
                           "made if missing)")
    for key in ("state_dir", "inbox", "outbox", "errors"):
        init.add_argument(f"--{key.replace('_', '-')}", dest=key, metavar="PATH",
                          help=f"with --service: this folder (default {SERVICE_DEFAULTS[key]})")
    command("recover", cmd_recover, "rebuild a lost store from the work folders")
    emulate = commands.add_parser(
        "emulate", help="run a local emulator of a provider's API (for trials and tests)",
        description="Run a local server that speaks a provider's API (SEAL signs with the "
                    "local signer), optionally injecting faults, with a journal of what it did.")
    emulated = emulate.add_subparsers(dest="provider", required=True, metavar="PROVIDER")
    seal = _emulator(emulated, "seal", cmd_emulate, "the Signius SEAL batch API",
                     "require this API-KEY header", "500-before=0.1,429=0.2,drop=0.05",
                     "folder for batches and journal")
    seal.add_argument("--step-delay", type=float, default=0.2,
                      help="seconds per status step after accept")
    seal.add_argument("--lag", type=float, default=0.0,
                      help="seconds before an upload or accept shows in BatchStatus (a server "
                           "that processes them asynchronously)")
    clevver = _emulator(emulated, "clevver", cmd_emulate_clevver,
                        "the Clevver batch storage API",
                        "require this token as Authorization: Bearer",
                        "500-before=0.1,429=0.2,drop=0.05,late-txid=0.1",
                        "folder for stored files and journal")
    clevver.add_argument("--polls", type=int, default=3,
                         help="status reads from start to delivered")
    clevver.add_argument("--late-seconds", type=float, default=3.0,
                         help="how late a 'late-start' takes effect and a 'late-txid' shows")
    centrapay = _emulator(emulated, "centrapay", cmd_emulate_centrapay,
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
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command != "run":
        logs.configure("console" if sys.stderr.isatty() else "json", "warning", sys.stderr)
    try:
        code = int(args.handler(args))
    except FolderSealError as exc:
        # Under systemd stderr is the journal: "<3>" files each line as an error, so
        # `journalctl -p err` shows why a start failed.
        prefix = "<3>" if systemd.on_journal(sys.stderr) else ""
        text = f"folderseal: {REDACTOR.text(str(exc))}"
        print("\n".join(prefix + line for line in text.splitlines()), file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = ExitCode.FAILURE
    return code
