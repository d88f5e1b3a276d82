"""The dashboard against crafted input and stolen cookies, over real HTTP: strict parsing (never a
500), a `Secure` cookie unless plain http on loopback is allowed, sign-out that revokes the
session everywhere, and a limit on failed sign-ins per client."""

from __future__ import annotations

import httpx

from tests.dashboard.conftest import csrf_of, signed_in_client

CRAFTED_COOKIES = [
    "²",
    "9" * 5000,
    "²²." + "a" * 24 + "." + "b" * 43,
    "1" * 5000 + "." + "a" * 24 + "." + "b" * 43,
    "1999999999.abc.def",
    "1999999999." + "é" * 24 + "." + "b" * 43,
    "x" * 3000,
]


def test_crafted_cookies_and_ids_are_refused_never_an_error(serve_dashboard):
    with serve_dashboard() as dash, httpx.Client(base_url=dash.origin, timeout=10) as client:
        for value in CRAFTED_COOKIES:
            # Raw latin-1 bytes, as the server decodes them: "²" arrives as "²" (isdigit() is true).
            raw = f"storesync_dashboard={value}".encode("latin-1")
            reply = client.get("/dashboard/", headers={"Cookie": raw})
            assert reply.status_code == 401, (value[:20], reply.status_code)
        with signed_in_client(dash) as operator:
            for path in ("/jobs/" + "9" * 5000, "/jobs/99999999999999999999", "/deliveries/²", "/jobs/-1"):
                assert operator.get("/dashboard" + path).status_code == 404, path
            for query in ("before=²", "before=" + "9" * 5000, "lane=٣"):
                assert operator.get("/dashboard/queue?" + query).status_code == 400, query


def test_the_session_cookie_is_secure_unless_plain_http_loopback_is_allowed(serve_dashboard):
    for allowed in (False, True):
        with (
            serve_dashboard(plain_http_loopback=allowed) as dash,
            httpx.Client(base_url=dash.origin) as client,
        ):
            reply = client.post("/dashboard/login", data={"token": dash.token, "next": "/dashboard/"})
            assert reply.status_code == 303
            attributes = [a.strip().lower() for a in reply.headers["set-cookie"].split(";")]
            assert ("secure" in attributes) is not allowed, attributes
            assert "httponly" in attributes and "samesite=strict" in attributes


def test_signing_out_revokes_the_session_for_every_copy_of_its_cookie(serve_dashboard):
    with serve_dashboard() as dash:
        with signed_in_client(dash) as operator:
            stolen = operator.cookies.get("storesync_dashboard")
            csrf = csrf_of(operator.get("/dashboard/").text)
            assert operator.post("/dashboard/logout", data={"csrf": csrf}).status_code == 303
        with httpx.Client(base_url=dash.origin, timeout=10) as thief:
            thief.cookies.set("storesync_dashboard", stolen, path="/dashboard/")
            assert thief.get("/dashboard/").status_code == 401
        # A fresh sign-in still works.
        with signed_in_client(dash) as operator:
            assert operator.get("/dashboard/").status_code == 200


def test_failed_sign_ins_are_limited_per_client(serve_dashboard):
    with serve_dashboard() as dash, httpx.Client(base_url=dash.origin, timeout=10) as client:
        wrong = [client.post("/dashboard/login", data={"token": "op-" + "0" * 32}) for _ in range(5)]
        assert [r.status_code for r in wrong] == [401] * 5
        # Refused now even with the right token: guessing stops here, for a while.
        throttled = client.post("/dashboard/login", data={"token": dash.token})
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        assert "Too many failed sign-ins" in throttled.text
