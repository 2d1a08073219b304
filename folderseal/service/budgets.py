"""Request limits kept for the whole fleet: on a PostgreSQL store, a provider with a
request limit (Centrapay's ``max_requests_per_minute``) waits at a budget every node
shares through the database, not at its own limiter (which would let each node spend
the whole limit). On SQLite (one node) nothing changes."""

from __future__ import annotations

from folderseal.core.config import Settings
from folderseal.providers import Provider
from folderseal.providers.http import Limited


def share_request_limit(provider: Provider, settings: Settings, node: str) -> bool:
    """Hand ``provider`` the fleet's budget for its limit, when it has one and the store
    is PostgreSQL; whether it did. The budget opens its own connection at its first use
    (batch threads share it) and closes with the provider."""
    url = settings.store.database_url()
    if url is None or not isinstance(provider, Limited):
        return False
    from folderseal.store.budgets import SharedBudget  # the PostgreSQL driver: fleets only
    limit = provider.request_limit
    provider.use_budget(SharedBudget(url, node, limit.key, limit.per_minute, limit.what))
    return True
