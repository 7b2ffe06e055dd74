"""course.kit.stores on its own: the memory store's contract on an injected clock, and the counting store.

The same contract on every real store is tests/test_store_contract.py; here the clock is moved by hand,
so expiry and the sweep are checked exactly, in microseconds.
"""
import threading

import pytest

from course.kit.storedown import StoreUnavailable
from course.kit.stores import CountingStore, MemoryStore, can


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(clock):
    return MemoryStore(clock=clock, sweep_every=60)


def test_a_record_reads_back_as_a_copy_never_the_stored_object(store):
    data = {"n": 1, "cart": ["a"]}
    store.set("s", data)
    got = store.get("s")
    assert got == data and got is not data
    got["cart"].append("b")
    data["n"] = 2
    assert store.get("s") == {"n": 1, "cart": ["a"]}, "nothing changes in the store until set() again"


def test_unknown_and_destroyed_ids_read_as_none_and_destroy_never_raises(store):
    assert store.get("never") is None
    store.destroy("never")
    store.set("s", {"a": 1})
    store.destroy("s")
    assert store.get("s") is None
    assert store.all() == {} and store.length() == 0


def test_data_that_is_not_json_is_refused_at_once(store):
    with pytest.raises(TypeError):
        store.set("s", {"f": object()})
    assert store.get("s") is None, "a refused write leaves nothing behind"


def test_a_record_expires_exactly_at_its_ttl(store, clock):
    store.set("s", {"a": 1}, ttl=10)
    clock.now += 9.999
    assert store.get("s") == {"a": 1}
    clock.now += 0.001
    assert store.get("s") is None, "at expires <= now the record is gone"
    assert "s" not in store._records, "an expired record that was read is deleted"


def test_a_record_without_ttl_never_expires(store, clock):
    store.set("s", {"a": 1})
    clock.now += 10 ** 9
    assert store.get("s") == {"a": 1}


def test_set_replaces_the_data_and_restarts_the_ttl(store, clock):
    store.set("s", {"a": 1}, ttl=10)
    clock.now += 8
    store.set("s", {"a": 2}, ttl=10)
    clock.now += 8
    assert store.get("s") == {"a": 2}
    store.set("s", {"a": 3})
    clock.now += 100
    assert store.get("s") == {"a": 3}, "set without ttl: never expires"


def test_touch_restarts_the_ttl_and_keeps_the_data(store, clock):
    store.set("s", {"a": 1}, ttl=10)
    clock.now += 8
    store.touch("s", ttl=10)
    clock.now += 8
    assert store.get("s") == {"a": 1}
    store.touch("s")
    clock.now += 10 ** 6
    assert store.get("s") == {"a": 1}, "touch without ttl: never expires"


def test_touch_never_revives_or_creates_a_record(store, clock):
    store.touch("never", ttl=10)
    assert store.get("never") is None
    store.set("s", {"a": 1}, ttl=1)
    clock.now += 1
    store.touch("s", ttl=100)
    assert store.get("s") is None, "an expired record stays expired"


def test_all_and_length_count_only_live_records(store, clock):
    store.set("a", {"n": 1}, ttl=5)
    store.set("b", {"n": 2})
    store.set("c", {"n": 3}, ttl=50)
    assert store.length() == 3
    clock.now += 5
    assert store.all() == {"b": {"n": 2}, "c": {"n": 3}}
    assert store.length() == 2
    store.clear()
    assert store.all() == {} and store.length() == 0


def test_a_write_sweeps_expired_records_nobody_reads_once_per_period(clock):
    store = MemoryStore(clock=clock, sweep_every=60)
    for i in range(5):
        store.set(f"bot{i}", {}, ttl=1)
    clock.now += 59
    store.set("keep", {}, ttl=1000)
    assert len(store._records) == 6, "no sweep before sweep_every seconds have passed"
    clock.now += 1
    store.set("keep2", {})
    assert set(store._records) == {"keep", "keep2"}, "the sweep at 60 s dropped the five dead records"
    for i in range(3):
        store.set(f"late{i}", {}, ttl=1)
    clock.now += 30
    store.set("x", {})
    assert len(store._records) == 6, "the next sweep is 60 s after the last one, not before"


def test_sweep_deletes_the_dead_and_says_how_many(store, clock):
    store.set("dead", {}, ttl=1)
    store.set("alive", {}, ttl=100)
    store.set("forever", {})
    clock.now += 1
    assert store.sweep() == 1
    assert set(store._records) == {"alive", "forever"}
    assert store.sweep() == 0


def test_the_memory_store_is_safe_across_threads(store):
    def writer(n):
        for i in range(200):
            store.set(f"{n}-{i}", {"i": i})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.length() == 800


def test_can_sees_only_callable_methods():
    class Partial:
        touch = None

        def all(self):
            return {}

    assert can(Partial(), "all")
    assert not can(Partial(), "touch"), "set to None: hidden"
    assert not can(Partial(), "length")
    assert can(MemoryStore(), "touch") and can(MemoryStore(), "clear")


# ---------------------------------------------------------------- CountingStore

def test_the_counting_store_counts_each_call_and_the_live_sessions():
    store = CountingStore()
    assert isinstance(store.store, MemoryStore)
    store.set("a", {"n": 1})
    store.get("a")
    store.get("missing")
    store.touch("a")
    store.destroy("missing")
    assert store.stats() == {"gets": 2, "sets": 1, "touches": 1, "destroys": 1, "sessions": 1}
    store.reset()
    assert store.stats() == {"gets": 0, "sets": 0, "touches": 0, "destroys": 0, "sessions": 1}
    assert store.get("a") == {"n": 1}, "reset keeps the records"


def test_inspector_calls_are_neither_counted_nor_failing():
    store = CountingStore()
    store.set("a", {"n": 1})
    store.reset()
    store.fail()
    assert store.peek("a") == {"n": 1} and store.holds("a") and not store.holds("b")
    assert store.peek("") is None and store.peek(None) is None
    assert store.all() == {"a": {"n": 1}} and store.length() == 1
    store.clear()
    assert store.length() == 0
    assert store.stats()["gets"] == 0


def test_a_set_or_touch_without_ttl_gets_the_default_day():
    inner = MemoryStore(clock=Clock(0))
    store = CountingStore(inner)
    assert CountingStore.DEFAULT_TTL == 86400
    store.set("a", {})
    assert inner._records["a"][1] == 86400
    store.touch("a", ttl=5)
    assert inner._records["a"][1] == 5
    store.touch("a")
    assert inner._records["a"][1] == 86400
    store.set("a", {}, ttl=7)
    assert inner._records["a"][1] == 7
    forever = CountingStore(MemoryStore(clock=Clock(0)), ttl=None)
    forever.set("a", {})
    assert forever.store._records["a"][1] is None


def test_a_failing_method_raises_store_unavailable_and_is_still_counted():
    store = CountingStore()
    store.fail("get")
    with pytest.raises(StoreUnavailable, match="get"):
        store.get("a")
    store.set("a", {"n": 1})                        # the others still work
    assert store.stats()["gets"] == 1
    store.recover()
    assert store.get("a") == {"n": 1}


def test_fail_without_names_fails_every_counted_method():
    store = CountingStore()
    store.fail()
    for call in (lambda: store.get("a"), lambda: store.set("a", {}), lambda: store.touch("a"),
                 lambda: store.destroy("a")):
        with pytest.raises(StoreUnavailable):
            call()
    store.recover()
    store.set("a", {})
    assert store.get("a") == {}


def test_failing_is_a_block_and_recovers_even_after_an_error():
    store = CountingStore()
    with pytest.raises(RuntimeError):
        with store.failing("destroy") as same:
            assert same is store
            with pytest.raises(StoreUnavailable):
                store.destroy("a")
            store.get("a")
            raise RuntimeError("the block failed")
    store.destroy("a")


def test_failing_an_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown store methods"):
        CountingStore().fail("get", "clear")


def test_check_raises_only_for_a_failing_method():
    store = CountingStore()
    store.check("get")
    store.fail("get")
    with pytest.raises(StoreUnavailable):
        store.check("get")
    store.check("set")


def test_touch_is_hidden_when_asked_or_when_the_inner_store_cannot():
    assert can(CountingStore(), "touch")
    assert not can(CountingStore(touch=False), "touch")

    class NoTouch:
        def get(self, sid): return None
        def set(self, sid, data, ttl=None): pass
        def destroy(self, sid): pass
        def all(self): return {"x": {}}

    store = CountingStore(NoTouch())
    assert not can(store, "touch")
    assert store.length() == 1, "length() falls back to len(all()) for a store without length()"


def test_the_first_sweep_is_sweep_every_seconds_after_the_store_was_made():
    clock = Clock(0)
    store = MemoryStore(clock=clock, sweep_every=60)
    clock.now = 50
    store.set("bot", {}, ttl=1)
    clock.now = 61
    store.set("x", {})
    assert "bot" not in store._records, "swept at 60 s after the store was made, not 60 s after the first write"


def test_the_counting_store_asks_the_inner_stores_own_length():
    class Counted(MemoryStore):
        def length(self):
            return 42          # a store that counts without listing (Redis DBSIZE, SQL COUNT)

    assert CountingStore(Counted()).length() == 42
