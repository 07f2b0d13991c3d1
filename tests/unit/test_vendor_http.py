"""``VendorHttp`` turns every ``requests`` failure into our error tree with a message of its
own (vendor, method, path, exception type), never the exception's text."""

from __future__ import annotations

import pytest
import requests
import tenacity

from adapters.http import VendorHttp
from schemas.errors import VendorAuth, VendorRejected, VendorUnavailable

SECRET = "tok-5ecret-0f-the-vendor"
ex = requests.exceptions


class RaisingSession(requests.Session):
    """A session whose every request raises ``error`` (whose text quotes the secret)."""

    def __init__(self, error: Exception):
        super().__init__()
        self.error = error
        self.sent = 0

    def request(self, *args, **kwargs):
        self.sent += 1
        raise self.error


class AnsweringSession(requests.Session):
    def __init__(self, status: int, body: bytes):
        super().__init__()
        self.status, self.body = status, body

    def request(self, *args, **kwargs):
        response = requests.Response()
        response.status_code, response._content = self.status, self.body
        return response


def vendor(session: requests.Session) -> VendorHttp:
    return VendorHttp(
        "harvest",
        "https://api.example.com/v2",
        headers={"Authorization": f"Bearer {SECRET}"},
        retrying=tenacity.Retrying(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_none(),
            retry=tenacity.retry_if_exception(lambda e: getattr(e, "safe_to_retry", False)),
            reraise=True,
        ),
        session=session,
    )


def leaky(kind: type[Exception]) -> Exception:
    return kind(f"bad header value 'Bearer {SECRET}\\n' for https://x/?token={SECRET}")


@pytest.mark.parametrize(
    ("raised", "expected", "code"),
    [
        (leaky(ex.InvalidHeader), VendorAuth, "vendor_auth"),
        (UnicodeEncodeError("latin-1", SECRET, 0, 1, "ordinal not in range"), VendorAuth, None),
        (leaky(ex.InvalidURL), VendorRejected, "vendor_rejected"),
        (leaky(ex.MissingSchema), VendorRejected, None),
        (leaky(ex.InvalidSchema), VendorRejected, None),
        (leaky(ex.TooManyRedirects), VendorRejected, None),
        (leaky(ex.InvalidJSONError), VendorRejected, None),
        (leaky(ex.ChunkedEncodingError), VendorUnavailable, "vendor_unavailable"),
        (leaky(ex.ContentDecodingError), VendorUnavailable, None),
        (leaky(ex.SSLError), VendorUnavailable, None),
        (leaky(ex.ProxyError), VendorUnavailable, None),
        (leaky(ex.ReadTimeout), VendorUnavailable, None),
        (leaky(ex.RetryError), VendorUnavailable, None),
        (leaky(ex.RequestException), VendorUnavailable, None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None,
)
def test_every_requests_failure_is_translated_without_its_text(raised, expected, code):
    with pytest.raises(expected) as caught:
        vendor(RaisingSession(raised)).request("POST", "/projects")

    error = caught.value
    assert SECRET not in error.message and SECRET not in str(error)
    assert error.message.startswith("harvest POST /projects: ")
    assert type(raised).__name__ in error.message or "timed out" in error.message
    assert code is None or error.code == code
    assert error.__cause__ is None and error.__suppress_context__


def test_permanent_translations_are_not_re_sent_and_idempotent_blips_are():
    unsendable = RaisingSession(leaky(ex.InvalidHeader))
    broken = RaisingSession(leaky(ex.ChunkedEncodingError))

    with pytest.raises(VendorAuth):
        vendor(unsendable).request("GET", "/projects")
    with pytest.raises(VendorUnavailable):
        vendor(broken).request("GET", "/projects")
    post_broken = RaisingSession(leaky(ex.ChunkedEncodingError))
    with pytest.raises(VendorUnavailable):
        vendor(post_broken).request("POST", "/projects")

    assert (unsendable.sent, broken.sent, post_broken.sent) == (1, 3, 1)


@pytest.mark.parametrize(
    "body", [b"<html>proxy error</html>", b"[" * 100_000, b'{"a": ' + b"9" * 6000 + b"}"]
)
def test_an_answer_that_is_not_json_is_vendor_unavailable(body):
    answer = vendor(AnsweringSession(200, body)).request("GET", "/company")

    with pytest.raises(VendorUnavailable) as caught:
        answer.json()

    assert caught.value.message == "harvest GET /company: 200 answer is not JSON"
    assert caught.value.safe_to_retry


def test_an_answer_that_is_json_reads_as_before():
    answer = vendor(AnsweringSession(201, b'{"id": 7}')).request("POST", "/projects")

    assert (answer.status_code, answer.json()) == (201, {"id": 7})


def test_an_error_answer_of_deep_nesting_is_reported_not_raised():
    with pytest.raises(VendorRejected) as caught:
        vendor(AnsweringSession(422, b"[" * 100_000)).request("POST", "/projects")

    assert caught.value.message.startswith("harvest POST /projects: 422 [[[")
