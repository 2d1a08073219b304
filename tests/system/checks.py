"""What the installed service must do under a real systemd, each printed as one
``PASS what`` or ``FAIL what: evidence`` line.

The checks run in order on one container, each from the state the previous one left:
READY, sealing, the credential, a clean stop, metrics, then the ways the service is
made to fail (kill -9, a frozen loop, a bad configuration, an unwritable state folder).
"""

from __future__ import annotations

import json
import re
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.pdfs import make_pdf
from tests.system.service import CONFIG, UNIT, Service

DROP_GROUP = "folderseal-drop"  # what `init --service` makes for the accounts that drop files
# Its exact words (the trial certificate's own name also says "NOT QUALIFIED").
TRIAL_WARNING = "sealing with a self-signed trial certificate: NOT QUALIFIED"
# What a system call refused by SystemCallFilter= (SystemCallErrorNumber=EPERM) looks like.
DENIED = re.compile(r"Operation not permitted|EPERM|PermissionError|Bad system call", re.I)
# systemd's words when it has to kill what a stop left behind.
LEFTOVER = re.compile(r"Killing process|left-over process|remains running|SIGKILL")
FETCH = """\
import sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(sys.argv[1], timeout=10) as answer:
        code, body = answer.status, answer.read()
except urllib.error.HTTPError as exc:
    code, body = exc.code, exc.read()
print(code)
sys.stdout.write(body.decode(errors="replace"))
"""


class Report:
    """PASS/FAIL lines as they happen; evidence lines are indented under their FAIL."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[str] = []

    def result(self, what: str, problem: str | None) -> None:
        if problem is None:
            self.passed.append(what)
            print(f"PASS {what}", flush=True)
        else:
            self.failed.append(what)
            evidence = problem.strip().replace("\n", "\n    ")
            print(f"FAIL {what}: {evidence}", flush=True)


Check = Callable[[Service, Report], None]


def _lines(entries: Sequence[object], limit: int = 12) -> str:
    return "\n".join(str(e) for e in entries[-limit:]) or "(none)"


def ready(s: Service, report: Report) -> None:
    """The service reaches READY: active (running), with a STATUS= text."""
    up = s.wait(lambda: s.is_running() and bool(s.show("StatusText").get("StatusText")), 30)
    report.result("the service reaches READY (active, running, STATUS= set)", None if up else
                  f"{s.state()}, StatusText={s.show('StatusText').get('StatusText')!r}\n"
                  f"{_lines(s.journal())}")


def trial_warning_logged(s: Service, report: Report) -> None:
    """The daemon logs the trial-seal warning at start, at level warning."""
    found = [e for e in s.journal() if TRIAL_WARNING in e.message]
    ok = any(e.identifier == "folderseal" and e.priority == 4 for e in found)
    report.result("the trial-seal warning is in the journal at level warning", None if ok else
                  f"no line of the daemon with {TRIAL_WARNING!r} at priority 4; "
                  f"lines with it: {_lines(found)}")


def seals_dropped_files(s: Service, report: Report) -> None:
    """A PDF and a text file dropped into the inbox (mode 0640) by a member of the drop
    group come out sealed, with sidecars; the inbox is empty again; that member cannot
    read config.toml."""
    folder = s.folder()
    inbox, outbox, errors = folder["inbox"], folder["outbox"], folder["errors"]
    drop = s.c.path("/var/tmp/drop")
    drop.mkdir(mode=0o755)
    make_pdf(drop / "scan.pdf")
    (drop / "note.txt").write_text("folderseal under systemd\n")
    copied = s.sh(f"useradd --groups {DROP_GROUP} scanner && runuser -u scanner -- sh -c "
                  f"'umask 027 && cp /var/tmp/drop/scan.pdf /var/tmp/drop/note.txt {inbox}/'")
    expected = ["scan.pdf", "scan.pdf.json", "note.txt", "note.txt.p7s", "note.txt.json"]

    def settled() -> bool:
        done = all(s.c.path(f"{outbox}/{name}").exists() for name in expected)
        return done or any(s.c.path(errors).glob("*.error.json"))

    s.wait(settled, 90)
    problems = [] if copied.rc == 0 else [f"cp into {inbox} as scanner: {copied.tail()}"]
    missing = [n for n in expected if not s.c.path(f"{outbox}/{n}").exists()]
    if missing:
        listing = s.sh(f"ls -la {inbox} {outbox} {errors}; cat {errors}/*.error.json").tail(40)
        problems.append(f"missing in {outbox}: {', '.join(missing)}\n{listing}")
    else:
        for sidecar in ("scan.pdf.json", "note.txt.json"):
            status = json.loads(s.c.path(f"{outbox}/{sidecar}").read_text()).get("status")
            if status != "signed":
                problems.append(f"{sidecar}: status {status!r}, not 'signed'")
        verify = s.sh(f"folderseal verify {outbox}")
        if verify.rc != 0:
            problems.append(f"folderseal verify {outbox}: exit {verify.rc}\n{verify.tail()}")
        pdfsig = s.sh(f"pdfsig {outbox}/scan.pdf")
        if "Signature is Valid" not in pdfsig.out or "Total document signed" not in pdfsig.out:
            problems.append(f"pdfsig {outbox}/scan.pdf:\n{pdfsig.tail()}")
        cms = s.sh(f"openssl cms -verify -binary -inform DER -noverify -in {outbox}/note.txt.p7s"
                   f" -content {outbox}/note.txt -out /dev/null")
        if cms.rc != 0:
            problems.append(f"openssl cms -verify note.txt.p7s:\n{cms.tail()}")
    left = [p.name for p in s.c.path(inbox).iterdir() if not p.name.startswith(".")]
    if left:
        problems.append(f"still in {inbox}: {', '.join(sorted(left))}")
    if s.sh(f"runuser -u scanner -- cat {CONFIG}").rc == 0:
        problems.append(f"scanner, a member of {DROP_GROUP} only, can read {CONFIG}")
    report.result(f"a PDF and a text file dropped into the inbox (mode 0640) by a member of "
                  f"{DROP_GROUP} come out sealed with sidecars (folderseal verify, pdfsig, "
                  "openssl cms); that member cannot read config.toml",
                  "\n".join(problems) or None)


def status_shows_the_trial_seal(s: Service, report: Report) -> None:
    """`folderseal status` run by root, outside the service (so it cannot read the seal's
    password), shows the running daemon's NOT QUALIFIED warning."""
    out = s.sh(f"folderseal status -c {CONFIG}")
    text = " ".join(out.out.split())  # rich wraps long lines
    report.result("folderseal status (root, outside the service) shows the trial-seal "
                  "warning the daemon found",
                  None if f"WARNING: provider local: {TRIAL_WARNING}" in text else
                  f"exit {out.rc}:\n{out.tail()}")


def credential(s: Service, report: Report) -> None:
    """LoadCredential= hands the seal's password to the service alone."""
    providers = s.config().get("providers", {})
    assert isinstance(providers, dict)
    named = [str(p.get("password_file")) for p in providers.values() if isinstance(p, dict)]
    problems = [] if any(n.startswith("$CREDENTIALS_DIRECTORY/") for n in named) else \
        [f"{CONFIG}: no password_file under $CREDENTIALS_DIRECTORY (has {named})"]
    source = s.sh("stat -c '%a %U:%G' /etc/folderseal/seal.pass").out.strip()
    if source != "600 root:root":
        problems.append(f"/etc/folderseal/seal.pass is {source}, not 600 root:root")
    if s.sh("runuser -u folderseal -- cat /etc/folderseal/seal.pass").rc == 0:
        problems.append("the folderseal user can read /etc/folderseal/seal.pass itself")
    handed = s.sh(f"ls /run/credentials/{UNIT}/")
    if "seal.pass" not in handed.out.split():
        problems.append(f"/run/credentials/{UNIT}/ has no seal.pass: {handed.tail()}")
    if not s.c.path(f"{s.folder()['outbox']}/scan.pdf.json").exists():
        problems.append("nothing was sealed with it (see the sealing check)")
    report.result("LoadCredential= gives the seal's password to the service alone, and it "
                  "seals with it", "\n".join(problems) or None)


def stops_cleanly(s: Service, report: Report) -> None:
    """systemctl stop ends the daemon and everything it started, without a SIGKILL."""
    cursor = s.cursor()
    stopped = s.systemctl("stop", UNIT)
    time.sleep(1)  # journald's stream reader catches up
    killed = [e for e in s.journal(after=cursor) if LEFTOVER.search(e.message)]
    state = s.show("Result", "ExecMainCode", "ExecMainStatus")
    leftover = s.sh("pgrep -a -u folderseal").out.strip()
    problems = []
    if stopped.rc != 0 or state.get("Result") != "success":
        problems.append(f"systemctl stop: exit {stopped.rc}; {state}")
    if killed:
        problems.append(f"systemd killed what the stop left behind:\n{_lines(killed)}")
    if leftover:
        problems.append(f"processes of folderseal still running:\n{leftover}")
    report.result("systemctl stop ends cleanly (Result=success, no SIGKILL, no leftover "
                  "process)", "\n".join(problems) or None)


def _free_port() -> int:
    with socket.socket() as sock:  # the container shares the host's network
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_metrics(text: str, listen: str) -> str:
    """config.toml with ``[metrics] listen`` set, whether or not it had a [metrics] table."""
    lines, out, in_metrics, done = text.splitlines(), [], False, False
    for line in lines:
        if line.startswith("["):
            in_metrics = line.strip() == "[metrics]"
        if in_metrics and re.match(r"\s*listen\s*=", line):
            continue
        out.append(line)
        if in_metrics and line.strip() == "[metrics]":
            out.append(f'listen = "{listen}"')
            done = True
    if not done:
        out += ["", "[metrics]", f'listen = "{listen}"']
    return "\n".join(out) + "\n"


def metrics(s: Service, report: Report) -> None:
    """With [metrics] listen set: /metrics has the process's memory and CPU under
    ProcSubset=pid, /healthz answers 200, the status page shows the trial warning."""
    listen = f"127.0.0.1:{_free_port()}"
    path = s.c.path(CONFIG)
    path.write_text(with_metrics(path.read_text(), listen))  # stays for the later checks
    s.c.path("/root/fetch.py").write_text(FETCH)
    restarted = s.systemctl("restart", UNIT)
    up = s.wait(s.is_running, 30)
    report.result(f"the service restarts with [metrics] listen = \"{listen}\"",
                  None if restarted.rc == 0 and up else
                  f"{restarted.tail()}\n{s.state()}\n{_lines(s.journal())}")
    subset = s.show("ProcSubset").get("ProcSubset", "?")
    page = {p: s.sh(f"python3 /root/fetch.py http://{listen}{p}")
            for p in ("/metrics", "/healthz", "/")}
    memory = re.search(r"^process_resident_memory_bytes (\S+)$", page["/metrics"].out, re.M)
    cpu = re.search(r"^process_cpu_seconds_total (\S+)$", page["/metrics"].out, re.M)
    report.result(f"/metrics shows process_resident_memory_bytes and process_cpu_seconds_total "
                  f"(ProcSubset={subset})",
                  None if memory and float(memory.group(1)) > 0 and cpu else
                  "process_ lines of /metrics: " + (
                      "\n".join(x for x in page["/metrics"].out.splitlines()
                                if x.startswith("process_")) or
                      f"none (of {len(page['/metrics'].out.splitlines())} lines)"))
    health = page["/healthz"].out.splitlines()[:1]
    report.result("/healthz answers 200", None if health == ["200"] else page["/healthz"].tail())
    report.result("the status page shows the trial-seal warning",
                  None if TRIAL_WARNING in page["/"].out else
                  f"no {TRIAL_WARNING!r} on http://{listen}/ ({page['/'].out[:3]!r}…)")


def seccomp_refused_nothing(s: Service, report: Report) -> None:
    """The system call filter is on, and refused nothing the daemon did so far."""
    refused = [e for e in s.journal() if e.identifier == "folderseal" and DENIED.search(e.message)]
    mode = s.sh(f"grep '^Seccomp:' /proc/{s.main_pid()}/status").out.split()
    problems = [] if mode == ["Seccomp:", "2"] else [f"the main process is not filtered: {mode}"]
    if refused:
        problems.append(_lines(refused))
    report.result("the seccomp filter is on and refused nothing (no EPERM in the journal)",
                  "\n".join(problems) or None)


def no_errors_when_healthy(s: Service, report: Report) -> None:
    """A healthy run leaves nothing at level err or worse."""
    errors = s.journal(max_priority=3)
    report.result("journalctl -u folderseal -p err shows nothing for a healthy run",
                  _lines(errors) if errors else None)


def restarts_after_kill(s: Service, report: Report) -> None:
    """kill -9 of the main process: systemd starts it again, READY again."""
    pid, restarts = s.main_pid(), s.restarts()
    s.sh(f"kill -9 {pid}")
    back = s.wait(lambda: s.restarts() > restarts and s.is_running()
                  and s.main_pid() not in (0, pid), s.restart_seconds() + 30)
    report.result("after kill -9 systemd restarts the service and it is READY again",
                  None if back else f"{s.state()}\n{_lines(s.journal())}")


def watchdog(s: Service, report: Report) -> None:
    """A frozen daemon (SIGSTOP) stops its pings: systemd kills it and starts it again."""
    with s.dropin("zz-nspawn-watchdog", "[Service]\nWatchdogSec=4\n"):
        s.systemctl("restart", UNIT)
        s.wait(s.is_running, 30)
        pid, restarts = s.main_pid(), s.restarts()
        time.sleep(6)  # longer than WatchdogSec=: a healthy daemon's pings keep it alive
        if s.main_pid() != pid or s.restarts() != restarts:
            report.result("the watchdog restarts a frozen daemon",
                          f"the healthy daemon was killed under WatchdogSec=4 (no pings?)\n"
                          f"{s.state()}\n{_lines(s.journal())}")
            return
        cursor = s.cursor()
        s.sh(f"kill -STOP {pid}")
        back = s.wait(lambda: s.restarts() > restarts and s.is_running()
                      and s.main_pid() not in (0, pid), 4 + s.restart_seconds() + 30)
        timeout = [e for e in s.journal(after=cursor) if "Watchdog timeout" in e.message]
        report.result("the watchdog kills a frozen daemon (SIGSTOP) and systemd restarts it",
                      None if back and timeout else
                      f"{s.state()}\n{_lines(s.journal(after=cursor))}")
    s.systemctl("restart", UNIT)  # the unit's own WatchdogSec= again


def _refused_start(s: Service, report: Report, what: str, edit: Callable[[str], str],
                   reason: str) -> None:
    """Started with ``edit`` applied, the daemon exits 78, is not restarted, and its
    error line (the reason, naming ``reason``) reaches journalctl -p err."""
    restarts = s.restarts()
    with s.config_edited(edit):
        cursor = s.cursor()
        started = s.systemctl("restart", UNIT)
        time.sleep(s.restart_seconds() + 2)  # a restart would have happened by now
        state = s.show("ActiveState", "ExecMainStatus", "NRestarts")
        problems = [] if started.rc != 0 else ["systemctl restart succeeded"]
        if state.get("ExecMainStatus") != "78" or state.get("ActiveState") != "failed" \
                or state.get("NRestarts") != str(restarts):
            problems.append(f"{state} (before: NRestarts={restarts})")
        report.result(f"{what}: exits 78, is not restarted",
                      "\n".join(problems + [_lines(s.journal(after=cursor))])
                      if problems else None)
        daemon = [e for e in s.journal(after=cursor) if e.identifier == "folderseal"]
        shown = [e for e in daemon if e.priority <= 3 and reason in e.message]
        report.result(f"{what}: journalctl -p err shows why the start failed",
                      None if shown else
                      f"no line of the daemon at err naming {reason!r}; -p err has:\n"
                      f"{_lines(s.journal(after=cursor, max_priority=3))}\n"
                      f"the daemon said:\n{_lines(daemon)}")
    s.systemctl("reset-failed", UNIT)


def bad_configuration(s: Service, report: Report) -> None:
    """A misspelt key in config.toml is a configuration error (exit 78)."""
    _refused_start(s, report, "a misspelt key in config.toml",
                   lambda text: 'stat_dir = "/var/lib/folderseal"\n' + text, "stat_dir")


def unwritable_state_dir(s: Service, report: Report) -> None:
    """A state_dir the service cannot write (as ``init /etc/folderseal`` once made it) is
    a configuration error (exit 78), not a crash to restart for ever."""
    state = s.c.path("/etc/folderseal/state")
    state.mkdir()

    def edit(text: str) -> str:
        edited, count = re.subn(r"^state_dir\s*=.*$", 'state_dir = "/etc/folderseal/state"',
                                text, flags=re.MULTILINE)
        return edited if count else 'state_dir = "/etc/folderseal/state"\n' + text

    _refused_start(s, report, "a state_dir the service cannot write", edit,
                   "/etc/folderseal/state")
    state.rmdir()


def starts_again(s: Service, report: Report) -> None:
    """With its configuration fixed, the service starts again."""
    started = s.systemctl("start", UNIT)
    up = s.wait(s.is_running, 30)
    report.result("with the configuration fixed, the service starts again",
                  None if started.rc == 0 and up else f"{s.state()}\n{_lines(s.journal())}")


CHECKS: list[Check] = [ready, trial_warning_logged, seals_dropped_files, credential,
                       status_shows_the_trial_seal, stops_cleanly, metrics,
                       seccomp_refused_nothing, no_errors_when_healthy, restarts_after_kill,
                       watchdog, bad_configuration, unwritable_state_dir, starts_again]


def run_checks(s: Service, report: Report) -> dict[str, float]:
    """Every check in order; returns the seconds each took."""
    seconds = {}
    for check in CHECKS:
        start = time.monotonic()
        try:
            check(s, report)
        except Exception as exc:  # a broken check is a FAIL, and the others still run
            doc = (check.__doc__ or check.__name__).strip().splitlines()[0]
            where = traceback.extract_tb(exc.__traceback__)[-1]
            report.result(doc, f"the check itself failed: {exc!r} "
                               f"({Path(where.filename).name}:{where.lineno})")
        seconds[check.__name__] = time.monotonic() - start
    return seconds
