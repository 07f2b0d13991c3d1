"""A POST that only reads (HubSpot's batch reads) is re-sent after a 5xx like a GET; any
other POST is not, since it may have been processed."""

from __future__ import annotations

import pytest
import requests
import tenacity

from adapters.http import VendorHttp
from schemas.errors import VendorUnavailable


class FlakySession(requests.Session):
    """Answers 502 to the first request, then 200."""

    def __init__(self):
        super().__init__()
        self.sent = 0

    def request(self, *args, **kwargs):
        self.sent += 1
        response = requests.Response()
        response.status_code = 502 if self.sent == 1 else 200
        response._content = b"{}"
        return response


def vendor(session: requests.Session) -> VendorHttp:
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_none(),
        retry=tenacity.retry_if_exception(lambda e: getattr(e, "safe_to_retry", False)),
        reraise=True,
    )
    return VendorHttp("hubspot", "https://api.example.com", headers={}, retrying=retrying,
                      session=session)  # fmt: skip


def test_a_read_only_post_is_resent_after_a_server_error():
    session = FlakySession()

    answer = vendor(session).request("POST", "/batch/read", json={}, read_only=True)

    assert answer.status_code == 200 and session.sent == 2


def test_a_post_that_may_have_been_processed_is_not_resent():
    session = FlakySession()

    with pytest.raises(VendorUnavailable):
        vendor(session).request("POST", "/objects", json={})
    assert session.sent == 1
