"""Tests for folderseal.core.redact.Redactor: registered secrets and secret-named keys are
masked."""

from __future__ import annotations

from folderseal.core.redact import MASK, REDACTOR, Redactor, without_secrets


def test_registered_secret_is_masked_in_text() -> None:
    """Every occurrence of a registered secret becomes *** and the rest is kept."""
    redactor = Redactor()
    redactor.add("hunter2-horse")
    assert (redactor.text("login hunter2-horse failed; hunter2-horse again")
            == f"login {MASK} failed; {MASK} again")


def test_text_without_secrets_is_unchanged() -> None:
    """A redactor with secrets leaves text that holds none of them alone."""
    redactor = Redactor()
    redactor.add("hunter2-horse")
    assert redactor.text("nothing to hide here") == "nothing to hide here"


def test_unregistered_values_are_not_masked() -> None:
    """A fresh redactor knows no secrets (the global one is not shared)."""
    assert Redactor().text("hunter2-horse") == "hunter2-horse"


def test_none_is_ignored() -> None:
    """add(None) registers nothing."""
    redactor = Redactor()
    redactor.add(None)
    assert redactor.text("None none") == "None none"


def test_secret_masked_in_nested_data() -> None:
    """Strings inside dicts, lists and tuples are masked; other values are kept."""
    redactor = Redactor()
    redactor.add("tok-ABCDEF")
    data = {"error": {"message": "bad key tok-ABCDEF", "attempts": 3,
                      "details": ["x", ("y tok-ABCDEF", 1.5)]},
            "ok": True, "none": None}
    assert redactor.data(data) == {
        "error": {"message": f"bad key {MASK}", "attempts": 3,
                  "details": ["x", [f"y {MASK}", 1.5]]},
        "ok": True, "none": None,
    }


def test_data_does_not_change_its_input() -> None:
    """data() returns a copy; the caller's dict still holds the original values."""
    redactor = Redactor()
    redactor.add("tok-ABCDEF")
    original = {"message": "tok-ABCDEF"}
    redactor.data(original)
    assert original == {"message": "tok-ABCDEF"}


def test_longest_secret_is_masked_first() -> None:
    """A secret that contains another is masked whole, leaving no tail of it visible."""
    redactor = Redactor()
    redactor.add("abcd")
    redactor.add("abcd-efgh-ijkl")
    assert redactor.text("key=abcd-efgh-ijkl") == f"key={MASK}"
    assert redactor.text("short=abcd") == f"short={MASK}"


def test_longest_first_regardless_of_registration_order() -> None:
    """Registering the longer secret first gives the same result."""
    redactor = Redactor()
    redactor.add("abcd-efgh-ijkl")
    redactor.add("abcd")
    assert redactor.text("abcd-efgh-ijkl abcd") == f"{MASK} {MASK}"


def test_bytes_secret_is_masked_in_text() -> None:
    """A secret read from a file as bytes is masked in text."""
    redactor = Redactor()
    redactor.add(b"p4ss-from-file")
    assert redactor.text("password p4ss-from-file refused") == f"password {MASK} refused"


def test_secret_with_surrounding_whitespace_is_masked_both_ways() -> None:
    """A secret read with a trailing newline is masked with and without it."""
    redactor = Redactor()
    redactor.add(b"p4ss-from-file\n")
    assert redactor.text("[p4ss-from-file]") == f"[{MASK}]"


def test_short_values_are_ignored() -> None:
    """Values shorter than 4 characters are not registered: they would mask ordinary words."""
    redactor = Redactor()
    redactor.add("abc")
    redactor.add("")
    assert redactor.text("abc is abc") == "abc is abc"


def test_four_characters_are_enough() -> None:
    """A 4-character secret is masked."""
    redactor = Redactor()
    redactor.add("wxyz")
    assert redactor.text("wxyz") == MASK


def test_secret_named_keys_are_masked() -> None:
    """Values of keys named like password, api_key, token, secret, Authorization are masked."""
    redactor = Redactor()
    data = {"password": "pw", "API_KEY": "k", "api-key": "k", "apikey": "k",
            "passphrase": "pp", "client_secret": "s", "access_token": "t",
            "Authorization": "Bearer x", "user": "alice"}
    masked = redactor.data(data)
    assert masked == {key: MASK for key in data if key != "user"} | {"user": "alice"}


def test_secret_named_keys_are_masked_when_nested() -> None:
    """A secret-named key deep inside lists and dicts is masked too."""
    redactor = Redactor()
    data = {"providers": [{"name": "x", "api_key": {"value": "k"}}]}
    assert redactor.data(data) == {"providers": [{"name": "x", "api_key": MASK}]}


def test_empty_secret_named_value_is_kept() -> None:
    """An empty password (nothing set) is shown as it is, not as ***."""
    redactor = Redactor()
    assert redactor.data({"password": "", "token": None}) == {"password": "", "token": None}


def test_a_pre_signed_urls_query_is_masked_whole() -> None:
    """A pre-signed URL's query is a read key: masked though never registered."""
    redactor = Redactor()
    url = ("https://bucket.s3.amazonaws.com/folderseal/b1/0001_a.jsonl?X-Amz-Algorithm="
           "AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261202&X-Amz-Signature=0a1b2c")
    masked = redactor.text(f"could not fetch {url}: 403")
    assert masked == ("could not fetch https://bucket.s3.amazonaws.com/folderseal/b1/"
                      "0001_a.jsonl?***: 403")
    assert redactor.data({"url": url}) == {"url": url.split("?")[0] + "?" + MASK}
    assert redactor.text("http://host/x?page=2") == "http://host/x?page=2"


def test_without_secrets_masks_keys_and_signed_queries() -> None:
    """The one masker of providers' messages: registered secrets, every URL's query and
    fragment, and signature parameters quoted without their URL."""
    REDACTOR.add("cp-api-key-for-the-masker")
    text = ("key cp-api-key-for-the-masker refused; fetching "
            "https://s3.test/b/k.jsonl?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F1"
            "&X-Amz-Signature=deadbeef failed; query X-Amz-Signature=cafe01&X-Amz-Expires=60 "
            "and Signature=f00d, https://files.test/a#frag")
    masked = without_secrets(text)
    for secret in ("cp-api-key-for-the-masker", "AKIA", "deadbeef", "cafe01", "f00d", "frag"):
        assert secret not in masked
    assert f"key {MASK} refused" in masked
    assert "https://s3.test/b/k.jsonl?… failed" in masked
    assert "X-Amz-Signature=…" in masked and "Signature=…" in masked
    assert without_secrets("nothing to hide at https://x.test/a") == \
        "nothing to hide at https://x.test/a"
