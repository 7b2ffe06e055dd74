"""course.kit.registry: each user's live sessions, by opaque handle, in SQLite."""
import string

from course.kit.registry import SessionRegistry


def test_a_handle_is_16_url_safe_characters_never_the_same_twice(tmp_path):
    registry = SessionRegistry(tmp_path / "r.db")
    handles = [registry.add(1, "h:x", "laptop", 1.0) for _ in range(20)]
    assert len(set(handles)) == 20
    assert all(len(h) == 16 and set(h) <= set(string.ascii_letters + string.digits + "-_") for h in handles), \
        f"12 random bytes, URL-safe (secrets.token_urlsafe(12)): {handles[0]!r}"


def test_the_client_is_kept_to_200_characters(tmp_path):
    registry = SessionRegistry(tmp_path / "r.db")
    registry.add(1, "h:x", "b" * 199 + "ABC", 1.0)
    [session] = registry.of_user(1)
    assert session["client"] == "b" * 199 + "A"


def test_only_a_text_handle_can_be_live(tmp_path):
    registry = SessionRegistry(tmp_path / "r.db")
    handle = registry.add(1, "h:x", "laptop", 1.0)
    assert registry.is_live(handle, 1) is True
    for odd in (None, ["x"], {"handle": handle}, 7):           # whatever a session record may hold
        assert registry.is_live(odd, 1) is False, odd


def test_seen_without_a_new_hash_keeps_the_hash(tmp_path):
    registry = SessionRegistry(tmp_path / "r.db")
    handle = registry.add(1, "h:first", "laptop", 100.0)
    registry.seen(handle, 150.0)
    assert registry.of_user(1) == [{"handle": handle, "id_hash": "h:first", "client": "laptop", "created": 100.0,
                                    "last_seen": 150.0}]


def test_ending_an_unknown_or_another_user_s_session_ends_nothing(tmp_path):
    registry = SessionRegistry(tmp_path / "r.db")
    mine = registry.add(1, "h:a", "laptop", 1.0)
    registry.set_series(mine, "series-a")
    assert registry.end("no-such-handle") is False and registry.end("no-such-handle", 1) is False
    assert registry.end(mine, 2) is False
    assert registry.series_of(mine, 1) == "series-a", "a refused end leaves the series alone"
    assert registry.end(mine) is True and not registry.is_live(mine, 1) and registry.series_of(mine, 1) is None
    assert registry.end(mine) is False, "a session ends once"
    for user_id in (None, 1):                       # with or without its owner's id: its series goes too
        handle = registry.add(1, "h:b", "phone", 1.0)
        registry.set_series(handle, "series-b")
        assert registry.end(handle, user_id) is True
        assert registry.db.rows("SELECT series FROM session_series WHERE handle = ?", (handle,)) == [], user_id


def test_a_new_series_replaces_the_old_one(tmp_path):
    registry = SessionRegistry(tmp_path / "r.db")
    handle = registry.add(1, "h:a", "laptop", 1.0)
    registry.set_series(handle, "first")
    registry.set_series(handle, "second")
    assert registry.series_of(handle, 1) == "second"


def test_ending_all_sessions_keeps_the_kept_one_s_series(tmp_path):
    registry = SessionRegistry(tmp_path / "r.db")
    kept, other = registry.add(1, "h:a", "laptop", 1.0), registry.add(1, "h:b", "phone", 1.0)
    bobs = registry.add(2, "h:c", "bob's", 1.0)
    for handle, series in ((kept, "s-kept"), (other, "s-other"), (bobs, "s-bob")):
        registry.set_series(handle, series)
    assert registry.end_all(1, keep=kept) == 1
    assert registry.series_of(kept, 1) == "s-kept" and registry.series_of(bobs, 2) == "s-bob"
    assert registry.db.rows("SELECT series FROM session_series WHERE handle = ?", (other,)) == [], \
        "the ended session's series is gone with it"
    assert registry.end_all(1) == 1 and registry.db.rows("SELECT handle FROM session_series")[0]["handle"] == bobs
