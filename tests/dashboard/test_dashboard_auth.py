"""Sign-in cookies, CSRF tokens, redirects and redaction, without a server."""

from __future__ import annotations

from storesync.web.dashboard import auth, render

TOKEN = "op-0123456789abcdef0123456789abcdef"


def test_session_cookie_is_valid_only_unaltered_under_its_token_and_within_its_lifetime():
    cookie = auth.new_session_cookie(TOKEN, now=1_000_000)
    session = auth.session_from_cookie(cookie, TOKEN, max_age_s=3600, now=1_000_100)
    assert session is not None and TOKEN not in cookie
    assert auth.session_from_cookie(cookie, TOKEN, max_age_s=3600, now=1_003_601) is None  # expired
    assert auth.session_from_cookie(cookie, TOKEN + "x", max_age_s=3600, now=1_000_100) is None  # rotated
    issued, nonce, mac = cookie.split(".")
    assert auth.session_from_cookie(f"{int(issued) + 1}.{nonce}.{mac}", TOKEN, 3600, now=1_000_100) is None
    assert auth.session_from_cookie(f"{issued}.{nonce}x.{mac}", TOKEN, 3600, now=1_000_100) is None
    for junk in ("", "a.b", "x.y.z", "1.2.3.4"):
        assert auth.session_from_cookie(junk, TOKEN, 3600) is None


def test_csrf_token_belongs_to_one_session_and_one_operator_token():
    one = auth.session_from_cookie(auth.new_session_cookie(TOKEN), TOKEN, 3600)
    two = auth.session_from_cookie(auth.new_session_cookie(TOKEN), TOKEN, 3600)
    assert one.csrf_ok(TOKEN, one.csrf_token(TOKEN))
    assert not one.csrf_ok(TOKEN, two.csrf_token(TOKEN))
    assert not one.csrf_ok(TOKEN, None) and not one.csrf_ok(TOKEN, "")
    assert not one.csrf_ok(TOKEN + "x", one.csrf_token(TOKEN))


def test_after_sign_in_only_dashboard_paths_are_followed():
    assert auth.safe_next("/dashboard", "/dashboard/queue?state=dead") == "/dashboard/queue?state=dead"
    for bad in (
        None,
        "",
        "https://evil.example/",
        "//evil.example/dashboard/",
        "/other",
        "/dashboard/\\evil",
        "/dashboardx/",
    ):
        assert auth.safe_next("/dashboard", bad) == "/dashboard/"


def test_redaction_hides_secret_keys_anywhere_and_url_passwords():
    shown = render.redact(
        {
            "id": 1,
            "Access_Token": "a",
            "list": [{"client_secret": "b", "n": 2}],
            "headers": {"Authorization": "Bearer c", "X-Shopify-Hmac-Sha256": "d"},
            "note": "via https://key:pass@shop.example/x and postgresql://u:pw@db/s",
        }
    )
    assert shown == {
        "id": 1,
        "Access_Token": "[redacted]",
        "list": [{"client_secret": "[redacted]", "n": 2}],
        "headers": {"Authorization": "[redacted]", "X-Shopify-Hmac-Sha256": "[redacted]"},
        "note": "via https://key:[redacted]@shop.example/x and postgresql://u:[redacted]@db/s",
    }


def test_ages_read_at_a_glance():
    assert [render.age(s) for s in (None, 0, 59, 61, 3599, 3600 * 2 + 300, 86400 * 3 + 7200)] == [
        "—",
        "0s",
        "59s",
        "1m 01s",
        "59m 59s",
        "2h 05m",
        "3d 2h",
    ]
