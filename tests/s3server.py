"""A real S3-compatible server on loopback for the tests: moto's server mode in a
subprocess (not an in-process mock of boto3), so boto3 speaks real HTTP to it and the
Centrapay emulator fetches its pre-signed URLs over the wire.

``s3_server()`` starts ``python -m moto.server`` on a free 127.0.0.1 port, waits until it
answers, yields its endpoint URL and stops it. ``make_bucket`` makes a fresh bucket.
The credentials are fixed test values moto accepts (it checks no signature).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ACCESS_KEY_ID = "AKIAFOLDERSEALTEST01"
SECRET_ACCESS_KEY = "s3-secret-9f2c7e1a4b6d8f0e3c5a7b9d1f2e4c6a"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def s3_server(log: Path | None = None, timeout: float = 30.0) -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    port = free_port()
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
           "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY, "AWS_DEFAULT_REGION": REGION}
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                               env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"moto's server exited with {process.returncode} at "
                                     "start; is moto[server] installed (make .venv)?")
            try:
                if httpx.get(url + "/moto-api/", timeout=1.0).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"moto's server did not answer at {url} in {timeout} s")
            time.sleep(0.1)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if log is not None and not isinstance(out, int):
            out.close()


def client(endpoint: str) -> Any:
    """A boto3 S3 client of the test's own, to look into the bucket from outside."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", region_name=REGION, endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def make_bucket(endpoint: str) -> str:
    """A new empty bucket; its name."""
    name = f"fs-test-{secrets.token_hex(6)}"
    client(endpoint).create_bucket(Bucket=name)
    return name


def keys(endpoint: str, bucket: str) -> list[str]:
    """Every object key in the bucket."""
    pages = client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def uploads(endpoint: str, bucket: str) -> list[str]:
    """The keys of the bucket's unfinished multipart uploads."""
    answer = client(endpoint).list_multipart_uploads(Bucket=bucket)
    return sorted(upload["Key"] for upload in answer.get("Uploads", []))


def provider_keys(endpoint: str, bucket: str, secret_file: str) -> dict[str, Any]:
    """The ``[providers.…]`` keys of ``publish = "s3"`` on this server."""
    return {"publish": "s3", "s3_endpoint_url": endpoint, "s3_bucket": bucket,
            "s3_region": REGION, "s3_access_key_id": ACCESS_KEY_ID,
            "s3_secret_access_key_file": secret_file}
