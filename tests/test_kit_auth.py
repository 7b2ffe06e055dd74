"""course.kit.auth on its own: log in (a new ID, only the id stored), log out, who is logged in."""
import bottle
import pytest

from course.kit import auth, beakerkit, storedown
from course.kit.beakerkit import CountingStore, HardenedSessions, get_session, session_config
from course.tools.testing import expired, wsgi_request

SECRET = "kit-auth-secret-0123456789abcdef"


class Plain(dict):
    """A session outside Beaker, for current_user_id."""


@pytest.mark.parametrize("value, user", [(1, 1), (42, 42), (0, None), (-1, None), (True, None), (False, None),
                                         ("1", None), (1.0, None), (None, None)])
def test_only_a_positive_int_is_a_user(value, user):
    assert auth.current_user_id(Plain(user_id=value)) == user


def test_no_user_key_is_nobody():
    assert auth.current_user_id(Plain()) is None
    assert auth.USER_KEY == "user_id"


def make():
    store = CountingStore()
    app = bottle.Bottle()
    app.install(storedown.plugin)

    @app.get("/login/<user_id>")
    def login(user_id):
        session = get_session()
        session["cart"] = session.get("cart", "kept")
        auth.log_in(session, user_id)
        return beakerkit.real_session(session).id

    @app.get("/login-real/<user_id>")
    def login_real(user_id):                 # log_in on Beaker's Session itself, not the lazy proxy
        session = beakerkit.real_session(get_session())
        auth.log_in(session, user_id)
        return session.id

    @app.get("/logout")
    def logout():
        try:
            auth.log_out(get_session())
        except storedown.StoreUnavailable:
            bottle.response.status = 500
            return auth.LOGOUT_FAILED
        return auth.LOGOUT_OK

    @app.get("/dashboard")
    @auth.login_required
    def dashboard():
        return f"user {auth.current_user_id()} cart {get_session().get('cart')}"

    @app.get("/visit")
    def visit():
        get_session()["cart"] = "apples"
        get_session().save()
        return beakerkit.real_session(get_session()).id

    return HardenedSessions(app, session_config(secret=SECRET, store=store)), store


def get(wsgi, path, cookie=""):
    status, headers, body = wsgi_request(wsgi, path, headers={"Cookie": cookie} if cookie else {})
    cookies = [v.strip().split(";")[0] for n, v in headers if n == "Set-Cookie"]
    return int(status.split()[0]), cookies, body.decode()


def test_the_dashboard_is_for_logged_in_users_only():
    wsgi, _ = make()
    status, _, body = get(wsgi, "/dashboard")
    assert (status, body) == (401, auth.NOT_LOGGED_IN + "\n")
    status, headers, _ = wsgi_request(wsgi, "/dashboard")
    assert dict(headers)["Content-Type"] == "text/plain; charset=utf-8"


def test_log_in_gives_a_new_id_keeps_the_data_and_stores_only_the_int_id():
    wsgi, store = make()
    _, [before], old_sid = get(wsgi, "/visit")
    _, [after], new_sid = get(wsgi, "/login/7", before)
    assert new_sid != old_sid and not store.holds(old_sid), "the pre-login session is gone (fixation)"
    assert get(wsgi, "/dashboard", after) == (200, [], "user 7 cart apples")
    record = beakerkit.stored_data(store, new_sid)
    assert record["user_id"] == 7 and isinstance(record["user_id"], int)
    assert get(wsgi, "/dashboard", before)[0] == 401, "the old cookie logs nobody in"


def test_log_in_on_beakers_own_session_object_saves_the_user_id():
    wsgi, store = make()
    _, _, sid = get(wsgi, "/login-real/9")
    assert beakerkit.stored_data(store, sid)["user_id"] == 9


def test_log_in_on_beakers_own_session_object_of_a_loaded_session_keeps_the_user_logged_in():
    wsgi, store = make()
    _, [before], _ = get(wsgi, "/visit")
    _, [after], sid = get(wsgi, "/login-real/9", before)
    assert beakerkit.stored_data(store, sid)["user_id"] == 9, "Beaker's write-back of the loaded data undid the login"
    assert get(wsgi, "/dashboard", after)[0] == 200


def test_log_out_destroys_the_record_and_clears_the_cookie():
    wsgi, store = make()
    _, [cookie], sid = get(wsgi, "/login/3")
    status, headers, body = wsgi_request(wsgi, "/logout", headers={"Cookie": cookie})
    [cleared] = [v for n, v in headers if n == "Set-Cookie"]
    assert (status, body) == ("200 OK", auth.LOGOUT_OK.encode())
    assert expired(cleared), f"the cookie is cleared: {cleared}"
    assert not store.holds(sid) and store.length() == 0
    assert get(wsgi, "/dashboard", cookie)[0] == 401


def test_a_store_that_is_down_at_logout_keeps_the_user_logged_in():
    wsgi, store = make()
    _, [cookie], sid = get(wsgi, "/login/3")
    with store.failing("destroy"):
        status, cookies, body = get(wsgi, "/logout", cookie)
    assert (status, body) == (500, auth.LOGOUT_FAILED) and cookies == []
    assert store.holds(sid) and get(wsgi, "/dashboard", cookie)[0] == 200


def test_a_store_that_is_down_at_login_changes_nothing():
    wsgi, store = make()
    _, [cookie], sid = get(wsgi, "/visit")
    with store.failing("destroy"):
        status, cookies, body = get(wsgi, "/login/3", cookie)
    assert status == 503 and cookies == [] and store.holds(sid)


def test_login_required_keeps_the_route_name_and_works_as_a_plugin():
    def dashboard():
        """The dashboard."""
        return "ok"

    guarded = auth.login_required(dashboard)
    assert guarded.__name__ == "dashboard" and guarded.__doc__ == "The dashboard."


def test_the_contract_texts():
    assert (auth.LOGIN_OK, auth.LOGIN_FAILED, auth.NOT_LOGGED_IN, auth.LOGOUT_OK, auth.LOGOUT_FAILED) == (
        "Login successful!", "Authentication failed", "Please log in to view this page.",
        "Logged out successfully", "Failed to log out.")


def test_the_other_parts_of_a_login_are_reachable_from_auth():
    from course.kit import forms, passwords, users
    assert auth.hash_password is passwords.hash_password and auth.UserDB is users.UserDB
    assert auth.read_credentials is forms.read_credentials and auth.verify is users.verify
    assert set(auth.__all__) <= set(dir(auth))
