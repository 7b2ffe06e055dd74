"""What the lessons say about libraries, checked against the libraries (no server needed).

- Beaker's MongoDB backend (lesson 08): Beaker 1.14.1's own ``ext:mongodb`` code runs against a
  small in-memory stand-in for a pymongo client (the few collection methods Beaker calls), so the
  test reads exactly what Beaker writes: ``expiration: None`` on every session document and no
  TTL index, so nothing ever expires, and the course's purge deletes nothing either.
- scrypt's memory limit (lesson 06): OpenSSL refuses a cost whose ``128 * r * (n + p + 2)`` bytes
  exceed ``maxmem``. Python's default limit, and the 64 MiB the lesson once passed, are checked
  against the lesson's cost and OWASP's, and so is the kit's ``scrypt_maxmem``.
"""
from __future__ import annotations

import hashlib
import re
import time

import pytest

from course.kit import auth

# ---------------------------------------------------------------- Beaker and MongoDB

class FakeCollection:
    """The part of pymongo's ``Collection`` that Beaker's ext:mongodb and the course's purge use."""

    def __init__(self):
        self.docs: dict[str, dict] = {}
        self.indexes: list = []

    @staticmethod
    def _matches(doc: dict, query: dict) -> bool:
        for field, cond in query.items():
            value = doc.get(field)
            if isinstance(cond, dict):
                for op, arg in cond.items():
                    if op == "$regex" and not (isinstance(value, str) and re.search(arg, value)):
                        return False
                    if op == "$ne" and value == arg:
                        return False
                    if op == "$lte" and not (value is not None and value <= arg):
                        return False
            elif value != cond:
                return False
        return True

    def find_one(self, query):
        return next((dict(d) for d in self.docs.values() if self._matches(d, query)), None)

    def update_one(self, query, update, upsert=False):
        doc = self.find_one(query)
        if doc is None:
            if not upsert:
                return
            doc = {"_id": query["_id"]}
        doc.update(update.get("$set", {}))
        self.docs[doc["_id"]] = doc

    def delete_many(self, query):
        gone = [key for key, doc in self.docs.items() if self._matches(doc, query)]
        for key in gone:
            del self.docs[key]
        return type("DeleteResult", (), {"deleted_count": len(gone)})()

    def create_index(self, *args, **kwargs):
        self.indexes.append((args, kwargs))

    create_indexes = create_index


class FakeDatabase:
    def __init__(self):
        self.collections: dict[str, FakeCollection] = {}

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self.collections.setdefault(name, FakeCollection())


class FakeMongoClient:
    def __init__(self, *args, **kwargs):
        self.db = FakeClientState.db

    def get_default_database(self):
        return self.db

    def close(self):
        pass


class FakeClientState:
    db = FakeDatabase()


@pytest.fixture
def mongo():
    FakeClientState.db = FakeDatabase()
    yield FakeClientState.db
    FakeClientState.db = FakeDatabase()


def beaker_session_in_mongo(client, timeout=1800):
    from beaker.session import Session

    session = Session({}, type="ext:mongodb", url=client, timeout=timeout, data_dir=None)
    session["visits"] = 1
    session.save()
    return session


def test_beaker_mongodb_writes_expiration_none_and_makes_no_ttl_index(mongo):
    session = beaker_session_in_mongo(FakeMongoClient())
    docs = mongo.backer_cache.docs                       # sic: Beaker's spelling of the collection
    assert len(docs) == 1, docs
    (doc,) = docs.values()
    assert session.id in doc["_id"] and doc["_id"].endswith(":session"), doc["_id"]
    assert doc["expiration"] is None, "Beaker passes no expiretime for a session, whatever its timeout"
    assert mongo.backer_cache.indexes == [], "Beaker creates no TTL index"


def test_beakers_own_mongodb_clean_up_never_removes_a_session(mongo, monkeypatch):
    beaker_session_in_mongo(FakeMongoClient(), timeout=1)
    from beaker.ext import mongodb

    later = time.time() + 10 * 365 * 86400
    monkeypatch.setattr(mongodb.time, "time", lambda: later)
    (doc,) = mongo.backer_cache.docs.values()
    manager = mongodb.MongoNamespaceManager(doc["_id"].rsplit(":", 1)[0], FakeMongoClient())
    manager._clear_expired()          # what Beaker runs before every read and write, ten years on
    assert len(mongo.backer_cache.docs) == 1


def test_the_course_mongodb_purge_deletes_nothing(mongo, monkeypatch):
    import pymongo

    from course.kit import stores_beaker

    beaker_session_in_mongo(FakeMongoClient())
    monkeypatch.setattr(pymongo, "MongoClient", FakeMongoClient)
    options = stores_beaker.beaker_options("mongodb://127.0.0.1:27017/sessions")
    purged = stores_beaker.purge_expired(options, older_than=0, now=time.time() + 10 * 365 * 86400)
    assert purged == 0 and len(mongo.backer_cache.docs) == 1, "ten years later the session is still there"


# ---------------------------------------------------------------- scrypt's memory limit

def scrypt(n, maxmem, r=8, p=1):
    return hashlib.scrypt(b"wonderland", salt=b"s" * 16, n=n, r=r, p=p, maxmem=maxmem, dklen=32)


def test_openssl_needs_128_r_n_plus_p_plus_2_bytes_for_scrypt():
    need = 128 * 8 * (2 ** 17 + 1 + 2)
    assert scrypt(2 ** 17, need)
    with pytest.raises(ValueError, match="memory limit"):
        scrypt(2 ** 17, need - 1)


def test_pythons_default_maxmem_refuses_2_15_with_r_8_and_allows_the_lessons_2_14():
    assert scrypt(2 ** 14, 0)                           # maxmem=0: OpenSSL's default, 32 MiB
    with pytest.raises(ValueError, match="memory limit"):
        scrypt(2 ** 15, 0)


def test_a_fixed_64_mib_maxmem_refuses_owasps_2_17():
    with pytest.raises(ValueError, match="memory limit"):
        scrypt(2 ** 17, 64 * 1024 * 1024)


@pytest.mark.parametrize("n", [2 ** 14, 2 ** 17])
def test_the_kits_scrypt_maxmem_hashes_and_checks_at_the_lessons_cost_and_owasps(n):
    stored = auth.hash_password("wonderland", n=n)
    assert stored.startswith(f"scrypt${n}$8$1$")
    assert auth.check_password("wonderland", stored) is True
    assert auth.check_password("Wonderland", stored) is False


def test_scrypt_maxmem_refuses_an_absurd_stored_cost_instead_of_running_it():
    assert auth.scrypt_maxmem(2 ** 30, 8, 1) == 2 ** 30
    with pytest.raises(ValueError):
        scrypt(2 ** 30, auth.scrypt_maxmem(2 ** 30, 8, 1))
