"""What the daemon checks at start before it touches a batch, and what it tidies once
started: a store that fits its configuration and its work folders, and nothing left
published that no batch names."""

from __future__ import annotations

from typing import Any

from folderseal.core.config import Settings
from folderseal.core.errors import ConfigError
from folderseal.providers import Provider
from folderseal.service.recover import missing_originals
from folderseal.store import Store


def store_is_current(store: Store, settings: Settings) -> None:
    """A store older than a work folder (restored from a copy, or its last writes lost)
    would drive batches whose files were delivered since: refuse, and say how out."""
    for name, folder in settings.folders.items():
        gone = missing_originals(store, name, folder)
        if gone:
            raise ConfigError(
                f"the store is older than the work folder of folder {name!r}: {len(gone)} "
                f"file(s) it has waiting there are gone (such as {gone[0].source_text!r}: "
                "delivered, failed or re-batched after this copy of the store was made). "
                "Run 'folderseal recover': it settles them by their sidecars and records")


def open_batches_are_configured(store: Store, settings: Settings) -> None:
    """Every batch still under way needs its folder and provider in the configuration."""
    for folder, provider, count in store.open_batch_owners():
        if folder not in settings.folders or provider not in settings.providers:
            raise ConfigError(
                f"{count} batch(es) of folder {folder!r} with provider {provider!r} are "
                "still under way, but the configuration no longer has that folder or "
                "provider: put it back until `folderseal status` shows them finished")


def tidy_published(store: Store, providers: dict[str, Provider], log: Any) -> None:
    """Once, in the background after start: remove what a provider published that no
    batch names any more (a crash between publishing and recording, or before
    removing): customer records must not stay readable at a URL for ever. Slow or out
    of reach, it holds up nothing; what it could not remove waits for the next start."""
    for name, provider in providers.items():
        if not provider.steps.publishes:
            continue
        try:
            # Read after the provider listed what is published: a batch that records
            # its key meanwhile keeps its copy.
            removed = provider.tidy(store.publish_keys)
        except Exception as exc:  # noqa: BLE001 - a cleanup must never stop the daemon
            log.warning("provider.tidy_failed", provider=name, reason=str(exc),
                        next_step="it is tried again at the next start; check that the "
                        "publish folder or bucket can be reached")
            continue
        if removed:
            log.info("provider.tidied", provider=name, removed=removed)
