"""The S3 server fixture: moto's server mode answers real S3 calls over loopback."""

from __future__ import annotations

import httpx

from tests.s3server import client, keys


def test_the_s3_server_stores_and_serves_over_http(s3_endpoint: str, s3_bucket: str) -> None:
    """A fresh bucket is empty; an object put there is listed and fetched back through a
    pre-signed URL by a plain HTTP client."""
    assert s3_endpoint.startswith("http://127.0.0.1:")
    assert keys(s3_endpoint, s3_bucket) == []
    s3 = client(s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="a/b.txt", Body=b"hello\n")
    assert keys(s3_endpoint, s3_bucket) == ["a/b.txt"]
    url = s3.generate_presigned_url("get_object", Params={"Bucket": s3_bucket,
                                                          "Key": "a/b.txt"}, ExpiresIn=60)
    assert "X-Amz-Signature=" in url
    assert httpx.get(url).content == b"hello\n"
