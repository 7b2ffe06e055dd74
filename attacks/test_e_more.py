"""The password-change form as an unthrottled password oracle; stale cookies that lock users out."""
import requests
from conftest import SECRET, form_login, log_in, post, status, token_of


def test_the_current_password_check_of_post_password_is_rate_limited(start):
    """Someone who rides or steals a session (no password) guesses the CURRENT password through
    POST /password: no counter, no 429, no end of the session - the login limit of 10.3 bypassed.
    Once right, the new password is theirs and every other session (the owner's) ends."""
    url, _ = start()
    thief = log_in(url)
    token = token_of(url, thief)
    codes = [thief.post(url + "/password", data={"current": f"guess-{n}", "new": "stolen-account-1"},
                        headers={"X-CSRF-Token": token}).status_code for n in range(30)]
    right = thief.post(url + "/password", data={"current": "wonderland", "new": "stolen-account-1"},
                       headers={"X-CSRF-Token": token})
    assert 429 in codes or right.status_code != 200, \
        f"30 wrong current passwords ({sorted(set(codes))}), then the right one: {right.status_code} {right.text!r}"


def test_a_cookie_the_server_refuses_is_expired_not_counted_for_ever(start, tmp_path):
    """A secret rotation (or the `sid` cookie lesson 03 left on 127.0.0.1:8080: cookies do not keep
    apart by port) makes every old cookie "made up". The 401s never expire it, so the browser sends
    it again and again; ten page loads later the user's own login form answers 429 for 10 minutes."""
    url, folder = start(secret=SECRET)
    old = log_in(url)
    url2, _ = start(secret=SECRET + " rotated", db_path=str(folder / "users.sqlite3"))
    browser = requests.Session()
    browser.cookies.update(old.cookies)
    cleared = []
    for _ in range(5):                                # five reloads of /notes, each with its favicon
        for path in ("/notes", "/favicon.ico"):
            resp = browser.get(url2 + path)
            cleared += [h for h in resp.raw.headers.getlist("Set-Cookie") if h.startswith("sid=")]
    page = browser.get(url2 + "/login")
    resp = form_login(url2, browser) if page.status_code == 200 else page
    assert resp.status_code == 200, f"the user's own login (GET /login, then POST) after 10 page loads: " \
                                     f"{resp.status_code} " \
                                     f"(Retry-After {resp.headers.get('Retry-After')}); the server never " \
                                     f"expired the cookie it refused: {cleared}"


def test_logout_expires_remember_and_session_cookies(start):
    """Held: logout expires both cookies and says Clear-Site-Data."""
    url, _ = start()
    alice = log_in(url, remember=True)
    resp = post(url, alice, "/logout")
    lines = resp.raw.headers.getlist("Set-Cookie")
    assert any(x.startswith("remember=") for x in lines) and any(x.startswith("sid=") for x in lines), lines
    assert resp.headers.get("Clear-Site-Data") and status(url, alice) == 401
