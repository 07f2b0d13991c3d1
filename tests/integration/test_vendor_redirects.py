"""Vendor and CRM calls never follow a redirect: ``requests`` would carry our custom token
headers to whatever host a 3xx names. And an id is always one path segment."""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adapters.http import VendorHttp, segment
from schemas.errors import VendorRejected
from tests.integration.harness import fast_retrying

TOKEN = "x-api-token-5ecret-value"


@contextlib.contextmanager
def server(answer):
    """A real HTTP server whose every GET is ``answer(handler)``; yields (origin, seen paths,
    the token headers each request carried)."""
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("x-api-token")))
            answer(self)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def redirect_to(location: str):
    def answer(handler):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_another_host_is_rejected_naming_the_host_and_not_followed(status):
    with server(redirect_to("http://attacker.invalid/collect?x=1")) as (origin, seen):
        http = VendorHttp(
            "pipedrive", origin, headers={"x-api-token": TOKEN}, retrying=fast_retrying()
        )
        with pytest.raises(VendorRejected) as raised:
            http.request("GET", "/api/v2/deals/1")

    assert "redirect to attacker.invalid not followed" in raised.value.message
    assert "collect" not in raised.value.message and TOKEN not in raised.value.message
    assert len(seen) == 1  # nothing sent again, to any host


def test_a_redirect_within_the_same_host_is_not_followed_either():
    with server(redirect_to("/api/v2/deals/2")) as (origin, seen):
        http = VendorHttp(
            "pipedrive", origin, headers={"x-api-token": TOKEN}, retrying=fast_retrying()
        )
        with pytest.raises(VendorRejected, match="redirect to the same host"):
            http.request("GET", "/api/v2/deals/1")
    assert [path for path, _ in seen] == ["/api/v2/deals/1"]


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [("5/../7", "5%2F..%2F7"), ("../../v1/users/me", "..%2F..%2Fv1%2Fusers%2Fme"),
     ("12?x=1#y", "12%3Fx%3D1%23y"), ("1234", "1234")],
)  # fmt: skip
def test_an_id_is_one_path_segment_whatever_it_holds(raw, encoded):
    assert segment(raw) == encoded

    def ok(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")

    with server(ok) as (origin, seen):
        http = VendorHttp("hubspot", origin, headers={}, retrying=fast_retrying())
        http.request("GET", f"/crm/v3/objects/deals/{segment(raw)}")
    assert seen[0][0] == f"/crm/v3/objects/deals/{encoded}"
