"""Whether a folder's inbox and work folder are in reach, and the backoff while not.

A share that goes away (the inbox vanishes, errors like ESTALE/ENOTCONN, or the work
folder's store marker cannot be read) is an outage: the folder detaches (its watcher
stops), backs off (1 s, doubling up to a minute), re-attaches, and deletes and forgets
nothing. Attaching the first time adopts the work folder (makes it, or checks that its
store marker is this store's); later attachments check the marker is still there.
"""

from __future__ import annotations

from collections.abc import Callable

from folderseal.core.config import FolderConfig
from folderseal.core.logs import get as get_logger
from folderseal.core.model import FileState
from folderseal.intake.fragments import Fragments
from folderseal.intake.watch import Watcher, choose_mode
from folderseal.store import Store
from folderseal.work import WorkFolder

MAX_OUTAGE_BACKOFF = 60.0
STALL_SECONDS = 60.0  # a scan this late means the folder is not making progress


def outage_reason(exc: OSError, cfg: FolderConfig) -> str:
    """An OSError of the share, as an outage's reason."""
    return f"{exc.strerror or exc}: {exc.filename or cfg.inbox}"


class Attachment:
    """One folder's hold on its inbox and work folder: attached, or backing off."""

    def __init__(self, name: str, cfg: FolderConfig, store: Store, work: WorkFolder,
                 watcher: Watcher, fragments: Fragments,
                 node_alive: Callable[[str], bool] = lambda node: False,
                 alive_seconds: float = 0.0) -> None:
        self.name = name
        self.cfg = cfg
        self.store = store
        self.store_id = store.store_id
        self.work = work
        self.watcher = watcher
        self.fragments = fragments
        self.node_alive = node_alive  # whether another node may still use its claims
        self.alive_seconds = alive_seconds  # a node silent this long is dead (store clock)
        self.log = get_logger(folder=name)
        self.attached = False
        self.adopted = False
        self.mode = ""         # "events" or "polling", once attached
        self.outage = ""       # why the folder is detached ("" when it is not)
        self.backoff = 1.0
        self.retry_at = 0.0

    def attach(self, now: float) -> bool:
        """Reach the inbox and work folder and start watching; False (detached) if not."""
        if not self.cfg.inbox.is_dir():
            self.detach(now, f"the inbox {self.cfg.inbox} is not there")
            return False
        if not self.adopted:
            if self.work.owner() is None and \
                    self.store.files_in_state(self.name, FileState.RETRYING):
                # An unfinished retry came from this work folder, so its marker missing is
                # a share not mounted: a new work folder here would take the retry's files.
                self.detach(now, f"the work folder {self.work.path} has no store marker, "
                                 "but a `folderseal retry` of this folder is unfinished: "
                                 "mount the inbox's share")
                return False
            # First contact: make (or check) the work folder. ForeignWorkFolderError
            # ends the daemon with exit 78: continuing could seal files twice.
            # alive_seconds is 0 only on a store of one node (SQLite).
            previous = self.work.adopt(self.store_id, self.store.batch_ids,
                                       shared=self.alive_seconds > 0)
            if previous is not None:
                self.log.info("work.handed_over", work=str(self.work.path), store=previous,
                              reason=f"the work folder held nothing of store {previous} "
                              "(its node was drained): it is this store's now")
            self.fragments.start(now)
            self.adopted = True
        elif not self.work.attached(self.store_id):
            self.detach(now, f"the work folder {self.work.path} is not reachable, or its "
                             "store marker is not ours (a share not mounted?)")
            return False
        mode, why = choose_mode(self.cfg.watch, self.cfg.inbox)
        if mode == "events":
            failure = self.watcher.start_events()
            if failure:
                mode, why = "polling", failure
        self.mode = mode
        self.attached = True
        self.outage = ""
        self.backoff = 1.0
        self.log.info("folder.watching", mode=mode, why=why, inbox=str(self.cfg.inbox))
        return True

    def adopt_dead_claims(self) -> None:
        """Claims of a node that no longer runs (dead, renamed, or gone) would wait for
        ever: this node takes them over and batches them as its own. The store decides
        whose a claim is, in one statement on its own clock; the renames of the dead
        nodes' claims folders into this node's only tidy up (a claim is found in any
        node's folder), and bring the claims the store never heard of to this node's
        scan."""
        recorded = self.store.adopt_claims(self.name, self.alive_seconds)
        folders = {node: self.work.take_claims_of(node)
                   for node in self.work.other_nodes() if not self.node_alive(node)}
        if recorded or any(folders.values()):
            self.log.info("claims.adopted", claims=recorded,
                          folders={node: len(ids) for node, ids in folders.items() if ids},
                          reason="claims of nodes that do not run (no heartbeat within "
                          f"{self.alive_seconds:g} s) are batched here")

    def detach(self, now: float, reason: str) -> None:
        """An outage: stop watching, and try again after the backoff."""
        if self.attached or reason != self.outage:
            self.log.warning("folder.outage", reason=reason, retry_in=round(self.backoff, 1))
        self.watcher.stop()
        self.attached = False
        self.outage = reason
        self.retry_at = now + self.backoff
        self.backoff = min(MAX_OUTAGE_BACKOFF, self.backoff * 2)

    def lost_watcher(self, now: float) -> bool:
        """The inotify watcher stopped: detach (to re-attach with a new one); True if so."""
        if self.watcher.alive:
            return False
        self.log.warning("folder.watcher_died", action="re-attaching")
        self.detach(now, "the inotify watcher stopped")
        return True

    def health(self, scan_overdue: float) -> str:
        """Why this folder's watcher is not making progress ("" when it is), given how
        late its scan is (0 while claims pause). Backing off from an outage is progress:
        the folder waits as it should (a restart would not help)."""
        if not self.attached:
            return ""
        if self.mode == "events" and not self.watcher.alive:
            return f"folder {self.name}: the inotify watcher stopped"
        if scan_overdue > STALL_SECONDS:
            return f"folder {self.name}: its scan is {scan_overdue:.0f} s overdue"
        return ""
