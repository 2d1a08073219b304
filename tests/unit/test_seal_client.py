"""The SEAL adapter over httpx.MockTransport: calls, auth, and errors translated once."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import pytest

from folderseal.core.errors import ConfigError, ProviderError, TransientError
from folderseal.providers.seal import SealProvider
from folderseal.providers.seal.client import SealClient, retry_after
from folderseal.providers.seal.config import SealProviderConfig
from tests.seal_fake import FakeSealApi

KEY = "k3y-for-the-adapter-tests"


def _cfg(**overrides: object) -> SealProviderConfig:
    return SealProviderConfig.model_validate({"kind": "seal", "base_url": "http://seal.test",
                                              "api_key": KEY, **overrides})


def _client(fake: FakeSealApi, **overrides: object) -> SealClient:
    return SealClient(_cfg(**overrides), "signius", transport=httpx.MockTransport(fake))


def _zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as package:
        for name in names:
            package.writestr(name, f"content of {name}")
    return path


def test_the_whole_lifecycle(tmp_path: Path) -> None:
    """create → upload → accept → status until CLOSED → download → delete, as documented."""
    fake = FakeSealApi(key=KEY)
    client = _client(fake)
    batch = client.create()
    assert batch.id == "2123" and batch.status == "NEW"
    client.upload(batch.id, _zip(tmp_path / "p.zip", ["0001_a.pdf", "0002_b.txt"]))
    status = client.status(batch.id)
    assert status is not None and status.status == "UPLOADED"
    assert [d.name for d in status.documents] == ["0001_a.pdf", "0002_b.txt"]
    client.accept(batch.id)
    while (status := client.status(batch.id)) is not None and status.status != "CLOSED":
        assert status.status == "IN_PROGRESS"
    size = client.download(batch.id, tmp_path / "signed.zip", 10**9)
    assert size == (tmp_path / "signed.zip").stat().st_size
    with zipfile.ZipFile(tmp_path / "signed.zip") as package:
        assert package.read("0001_a.pdf") == b"SIGNED:content of 0001_a.pdf"
    client.delete(batch.id)
    assert [op for op, _ in fake.calls] == ["create", "upload", "status", "accept", "status",
                                            "status", "download", "delete"]


@pytest.mark.parametrize("form", ["query", "json", "path"])
def test_accept_batch_id_forms(tmp_path: Path, form: str) -> None:
    """AcceptBatch carries the batch id where configured: query string, JSON body or path."""
    seen: list[httpx.Request] = []
    fake = FakeSealApi(key=KEY)

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return fake(request)

    client = SealClient(_cfg(accept_batch_id=form), "signius", transport=httpx.MockTransport(spy))
    batch = client.create()
    client.upload(batch.id, _zip(tmp_path / "p.zip", ["0001_a.pdf"]))
    client.accept(batch.id)
    accept = seen[-1]
    if form == "query":
        assert accept.url.path == "/api/AcceptBatch" and accept.url.params["batchId"] == "2123"
    elif form == "json":
        assert accept.url.path == "/api/AcceptBatch" and accept.content == b'{"batchId":2123}'
    else:
        assert accept.url.path == "/api/AcceptBatch/2123"
    assert fake.batches[2123].status == "ACCEPTED"


def test_api_key_header_and_basic_auth() -> None:
    """The key goes in the configured header, or as the password of HTTP Basic."""
    headers: list[httpx.Headers] = []

    def record(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers)
        return httpx.Response(404)

    for overrides in ({}, {"api_key_header": "X-Seal-Key"},
                      {"auth": "basic", "username": "folderseal"}):
        SealClient(_cfg(**overrides), "s", transport=httpx.MockTransport(record)).status("1")
    assert headers[0]["API-KEY"] == KEY
    assert headers[1]["X-Seal-Key"] == KEY and "API-KEY" not in headers[1]
    assert headers[2]["Authorization"].startswith("Basic ")


def test_key_from_a_file(tmp_path: Path) -> None:
    """api_key_file supplies the key (its first line)."""
    (tmp_path / "key").write_text(KEY + "\n")
    fake = FakeSealApi(key=KEY)
    client = SealClient(SealProviderConfig.model_validate(
        {"kind": "seal", "base_url": "http://seal.test", "api_key_file": tmp_path / "key"}),
        "s", transport=httpx.MockTransport(fake))
    assert client.create().id == "2123"


@pytest.mark.parametrize("action", ["500-before", "500-after", "timeout-after", "nonsense"])
def test_server_errors_timeouts_and_nonsense_are_transient(action: str) -> None:
    """5xx, a lost answer and an unreadable answer are transient: the step is retried."""
    fake = FakeSealApi(key=KEY)
    fake.script("create", action)
    with pytest.raises(TransientError):
        _client(fake).create()


def test_429_carries_retry_after() -> None:
    """429 is transient and carries the server's Retry-After."""
    fake = FakeSealApi(key=KEY)
    fake.script("create", "429")
    with pytest.raises(TransientError) as caught:
        _client(fake).create()
    assert caught.value.retry_after == 7.0


def test_other_4xx_fail_with_status_and_redacted_body() -> None:
    """A 400 fails the step with the HTTP status and the body, the key masked."""
    from folderseal.core.redact import REDACTOR

    REDACTOR.add(KEY)
    fake = FakeSealApi(key=KEY)
    fake.script("create", "400")
    with pytest.raises(ProviderError) as caught:
        _client(fake).create()
    assert caught.value.code == "http_400"
    assert "HTTP 400" in caught.value.message and "bad request" in caught.value.message
    assert KEY not in caught.value.message


def test_a_refused_key_says_so() -> None:
    """401 is a ProviderError whose message points at the key (without showing it)."""
    with pytest.raises(ProviderError) as caught:
        _client(FakeSealApi(key="another")).create()
    assert caught.value.code == "http_401" and "API key" in caught.value.message


def test_network_errors_are_transient() -> None:
    """A refused connection is transient."""
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = SealClient(_cfg(), "s", transport=httpx.MockTransport(refuse))
    with pytest.raises(TransientError):
        client.status("1")


def test_unknown_batch_status_is_none_and_delete_of_it_is_fine() -> None:
    """404 on BatchStatus means SEAL does not know the batch; deleting it is a no-op."""
    client = _client(FakeSealApi(key=KEY))
    assert client.status("999") is None
    client.delete("999")


def test_a_truncated_download_is_transient(tmp_path: Path) -> None:
    """A body shorter than its Content-Length is fetched again, never used."""
    def short(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "1000"},
                              stream=httpx.ByteStream(b"PK\x03\x04 too short"))

    client = SealClient(_cfg(), "s", transport=httpx.MockTransport(short))
    with pytest.raises(TransientError, match="broke off"):
        client.download("1", tmp_path / "p.zip", 10**9)
    assert not (tmp_path / "p.zip").exists()


def test_uploads_stream_from_disk_with_a_length(tmp_path: Path) -> None:
    """The package is sent as octet-stream with Content-Length, read in chunks."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        request.read()
        return httpx.Response(202, json={"id": "1"})

    package = tmp_path / "big.zip"
    package.write_bytes(b"x" * (3 << 20))
    SealClient(_cfg(), "s", transport=httpx.MockTransport(record)).upload("5", package)
    assert seen[0].headers["Content-Type"] == "application/octet-stream"
    assert seen[0].headers["Content-Length"] == str(3 << 20)
    assert seen[0].content == package.read_bytes()


@pytest.mark.parametrize(("value", "expected"), [("7", 7.0), ("0", 0.0), ("soon", None),
                                                 (None, None)])
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    """Retry-After as seconds is honoured; junk is ignored."""
    assert retry_after(value) == expected


def test_retry_after_as_an_http_date() -> None:
    """Retry-After may be an HTTP date in the future."""
    import email.utils
    import time

    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after(when) or 0) <= 31


def test_a_download_is_written_whole_to_its_file(tmp_path: Path) -> None:
    """A complete download lands, byte for byte, under its final name."""
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as package:
        package.writestr("0001_a.pdf", b"y" * 100_000)

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body.getvalue())

    client = SealClient(_cfg(), "s", transport=httpx.MockTransport(serve))
    assert client.download("1", tmp_path / "p.zip", 10**9) == len(body.getvalue())
    assert (tmp_path / "p.zip").read_bytes() == body.getvalue()


def test_a_redirect_is_an_error_naming_where_it_points() -> None:
    """A 3xx is never taken for success: it fails with the Location to fix base_url."""
    def moved(request: httpx.Request) -> httpx.Response:
        return httpx.Response(301, headers={"Location": "https://seal.example.org/api"})

    client = SealClient(_cfg(), "s", transport=httpx.MockTransport(moved))
    with pytest.raises(ProviderError) as caught:
        client.create()
    assert caught.value.code == "http_301" and "seal.example.org" in caught.value.message


def test_a_redirect_is_named_without_its_query() -> None:
    """A redirect's Location is named without its query or fragment, which may hold a key,
    and without the user name and password it may carry, both in a failed step's error
    and in `check`'s problem."""
    def moved(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={
            "Location": "https://svc:pa55w0rd@sso.example.org/login?session=s3cr3t-token#frag"})

    client = SealClient(_cfg(), "s", transport=httpx.MockTransport(moved))
    with pytest.raises(ProviderError) as caught:
        client.create()
    assert "https://sso.example.org/login)" in caught.value.message
    provider = SealProvider("s", _cfg(), Path("/nonexistent"), httpx.MockTransport(moved))
    with pytest.raises(ConfigError) as refused:
        provider.check()
    assert "to https://sso.example.org/login)" in str(refused.value)
    for text in (caught.value.message, str(refused.value)):
        assert "s3cr3t" not in text and "frag" not in text, text
        assert "pa55w0rd" not in text and "svc" not in text, text


def test_a_download_beyond_max_package_bytes_is_refused(tmp_path: Path) -> None:
    """A package larger than the limit is cut off and fails, never kept."""
    def big(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"z" * (3 << 20))

    client = SealClient(_cfg(), "s", transport=httpx.MockTransport(big))
    with pytest.raises(ProviderError) as caught:
        client.download("1", tmp_path / "p.zip", 1 << 20)
    assert caught.value.code == "package_too_big" and not (tmp_path / "p.zip").exists()


def test_retry_after_zero_still_waits_a_second() -> None:
    """Retry-After: 0 does not make the daemon hammer SEAL."""
    def zero(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "0"})

    client = SealClient(_cfg(), "s", transport=httpx.MockTransport(zero))
    with pytest.raises(TransientError) as caught:
        client.create()
    assert caught.value.retry_after == 1.0
