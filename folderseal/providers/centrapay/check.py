"""``folderseal check`` for a Centrapay provider: what it can prove without loading
anything.

The API key (a GET of a batch that does not exist answers 403 with a key Centrapay
takes, 401 without); that folderseal may write the bucket or publish_dir (a probe is
published); that the published URL answers with the probe (folderseal fetches it back
itself, then removes it). A refused key, a redirect, a wrong address, a bucket or
folder folderseal may not write, a URL that answers but not with the probe:
ConfigError. No answer, a 5xx or a 429: ``unreachable`` (the daemon starts anyway; its
batches wait). Every outcome says that each batch holds one file.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from folderseal.core.errors import ConfigError, TransientError
from folderseal.core.keyfiles import exposure, service_accounts, service_group
from folderseal.core.redact import without_secrets
from folderseal.providers import Health
from folderseal.providers.centrapay import publish
from folderseal.providers.centrapay.client import CentrapayClient
from folderseal.providers.centrapay.config import BATCH_TYPES, RATE_LIMIT
from folderseal.providers.http import tls_context, without_query

if TYPE_CHECKING:
    from folderseal.providers.centrapay.provider import CentrapayProvider

PROBE_TIMEOUT = 10.0
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ONE_FILE_NOTE = ("each Centrapay batch holds one file, so the folders' batch_max_files is "
                 "capped at 1 (one file = one batch = one batch)")


def health(provider: CentrapayProvider, network: bool = True) -> Health:
    warnings = _warnings(provider)
    if not network:
        return Health(warnings=tuple(warnings))
    cfg = provider.cfg
    where = f"Centrapay at {cfg.base_url}"
    client = CentrapayClient(cfg, provider.name, provider.budget, provider.transport,
                             timeout=PROBE_TIMEOUT)
    try:
        status, location, said = client.probe(_unknown_id())
    except TransientError as exc:
        return Health(warnings=tuple(warnings), unreachable=(
            f"{where} cannot be reached ({exc}): check base_url, the network, any "
            "firewall or proxy; `folderseal run` starts anyway and its batches wait "
            f"until Centrapay answers; {ONE_FILE_NOTE}"))
    finally:
        client.close()
    if status == 401:
        variable = f"FOLDERSEAL_PROVIDERS__{provider.name.upper()}__API_KEY"
        raise ConfigError(f"{where} refused the API key (HTTP 401): check api_key_file, "
                          f"api_key or {variable}; {ONE_FILE_NOTE}")
    if 300 <= status < 400:
        raise ConfigError(f"{where} answered a redirect (HTTP {status} to "
                          f"{without_query(location)}): set base_url to the address "
                          f"Centrapay really has; {ONE_FILE_NOTE}")
    if status == 429 or status >= 500:
        return Health(warnings=tuple(warnings), unreachable=(
            f"{where} answered a test call with HTTP {status}, so the API key could not "
            "be checked; run check again later; `folderseal run` starts anyway and its "
            f"batches wait; {ONE_FILE_NOTE}"))
    if status != 403:
        raise ConfigError(f"{where} answered GET /api/batches/<a batch that does not "
                          f"exist> with HTTP {status}{' (' + said + ')' if said else ''}, "
                          "not 403: base_url is the host root (e.g. "
                          "https://service.centrapay.com; the paths start with /api/); "
                          f"{ONE_FILE_NOTE}")
    try:
        unreachable = _probe_publish(provider)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; {ONE_FILE_NOTE}") from None
    verified = f"{where} took the API key; {ONE_FILE_NOTE}"
    if unreachable:
        unreachable += f"; {ONE_FILE_NOTE}"
    else:
        verified += (f"; a probe published to {provider.publisher.where} was fetched back "
                     "from its URL and removed")
    return Health(verified=verified, warnings=tuple(warnings), unreachable=unreachable)


def _warnings(provider: CentrapayProvider) -> list[str]:
    cfg = provider.cfg
    warnings = exposure(cfg.secret_files(), service_accounts(provider.state_dir),
                        service_group(provider.state_dir))
    if not cfg.verify_tls:
        warnings.append("TLS verification is off (verify_tls = false): anyone on the "
                        "path could pose as Centrapay")
    if cfg.max_requests_per_minute > RATE_LIMIT:
        warnings.append(rate_warning(cfg.max_requests_per_minute))
    if cfg.publish == "folder":
        warnings += _listable(cfg.publish_dir)
    elif not cfg.s3_prefix:
        warnings.append(f"s3_prefix is empty: folderseal's batch files go to the root of "
                        f"bucket {cfg.s3_bucket}, beside everything else there; "
                        'give them a prefix of their own, e.g. s3_prefix = "folderseal/"')
    if not cfg.format:
        warnings.append(f"batch_type {cfg.batch_type!r} is not one folderseal knows "
                        "(" + ", ".join(BATCH_TYPES) + "): each file's format is told by "
                        "its suffix (.jsonl, .ndjson, .csv), and a file with another suffix "
                        "is checked for UTF-8 only")
    return warnings


def rate_warning(per_minute: float) -> str:
    return (f"max_requests_per_minute = {per_minute:g} is above the about {RATE_LIMIT} "
            "requests a minute Centrapay allows an account: its calls would be refused "
            "with HTTP 429 (each then waits its Retry-After); set max_requests_per_minute "
            f"= {RATE_LIMIT * 3 // 4} or less (less again when another client shares the "
            "account)")


def _probe_publish(provider: CentrapayProvider) -> str:
    """Publish a tiny probe, fetch it back from its URL, remove it. ConfigError for what
    must be fixed; the reason for what could not be tried now."""
    publisher = provider.publisher
    key = publisher.probe_key()
    body = f"folderseal check {secrets.token_hex(8)}\n".encode()
    with tempfile.TemporaryFile() as probe:
        probe.write(body)
        probe.flush()
        try:
            publisher.publish(key, probe.fileno(), len(body), lambda: None)
        except publish.PublishError as exc:
            if exc.config:
                raise ConfigError(f"publishing a probe failed: {exc}") from None
            return (f"a probe could not be published ({exc}); `folderseal run` starts "
                    "anyway and its batches wait")
    try:
        return _fetch_probe(provider, key, body)
    finally:
        try:
            publisher.remove(key)
        except publish.PublishError as exc:
            provider.log.warning("centrapay.probe_left", key=publisher.shown(key),
                                 reason=str(exc), next_step="it is removed at the next start")


def _fetch_probe(provider: CentrapayProvider, key: str, body: bytes) -> str:
    """Fetch the probe from its URL as Centrapay would (folderseal's own TLS settings,
    without its client certificate)."""
    cfg, publisher = provider.cfg, provider.publisher
    url = publisher.url(key)
    shown = without_query(url)
    if cfg.publish == "folder":
        shown = shown[:-len(key)] + publisher.shown(key)
    fix = ("the bucket's endpoint must be reachable from Centrapay: check s3_endpoint_url"
           if cfg.publish == "s3" else "serve publish_dir at publish_url_prefix")
    try:
        context = tls_context(cfg.model_copy(update={"client_certificate": None,
                                                     "client_key": None}))
        with httpx.Client(verify=context, timeout=PROBE_TIMEOUT,
                          follow_redirects=False) as fetcher:
            response = fetcher.get(url)
    except httpx.HTTPError as exc:
        return (f"the probe published at {shown} could not be fetched "
                f"({type(exc).__name__}: {without_secrets(str(exc))}); {fix}; "
                "`folderseal run` starts anyway")
    if response.status_code >= 500:
        return (f"fetching the probe published at {shown} answered HTTP "
                f"{response.status_code}; {fix}; run check again later")
    if response.status_code != 200 or response.content != body:
        got = f"HTTP {response.status_code}" if response.status_code != 200 \
            else "other content"
        raise ConfigError(f"the probe published as {publisher.shown(key)} in "
                          f"{publisher.where} was not served back at {shown} ({got}): {fix}")
    return ""


def _unknown_id() -> str:
    """A batch id that looks like Centrapay's (22 base58 characters) and names none."""
    return "".join(secrets.choice(BASE58) for _ in range(22))


def _listable(folder: Path | None) -> list[str]:
    """A warning when other accounts may list publish_dir: the names are the only key to
    the records in it."""
    if folder is None:
        return []
    try:
        mode = folder.stat().st_mode
    except OSError:
        return []
    if mode & 0o004:
        return [f"publish_dir {folder} may be listed by every account (mode "
                f"{mode & 0o777:o}), and the file names are the only key to the records: "
                f"chmod o-r {folder} (keep o+x for the web server), and turn off directory "
                "listing in the web server"]
    return []
