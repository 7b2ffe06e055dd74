"""Harness for the adversarial review of lesson 10: the capstone served on a free port.

Every test in this folder asserts the SECURE behaviour; a failing test is a finding reproduced.
Run:  .venv/bin/python -m pytest attacks -q -p no:randomly [--target solutions|lessons|FOLDER]
"""
import re
import shutil
import uuid

import pytest
import requests

from course.kit import auth
from course.lesson.server import serve
from course.tools.loader import load_app_module

SECRET = "adversary secret for lesson 10, long enough"
ALICE = {"username": "alice", "password": "wonderland"}
BOB = {"username": "bob", "password": "builder"}


@pytest.fixture(scope="session")
def capstone(pytestconfig):
    return load_app_module(pytestconfig.getoption("--target"), "10_capstone")


@pytest.fixture(scope="session")
def users_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("adv10") / "users.sqlite3"
    auth.UserDB(path).find("alice")
    return path


@pytest.fixture
def start(capstone, users_file, tmp_path):
    """``url, app_folder = start(**options)``."""
    contexts = []

    def run(**options):
        folder = tmp_path / uuid.uuid4().hex[:8]
        folder.mkdir()
        shutil.copy(users_file, folder / "users.sqlite3")
        options.setdefault("secret", SECRET)
        options.setdefault("db_path", str(folder / "users.sqlite3"))
        options.setdefault("store_url", f"sqlite:///{folder}/sessions.db")
        context = serve(capstone.create_app(**options))
        contexts.append(context)
        return context.__enter__(), folder

    yield run
    for context in contexts:
        context.__exit__(None, None, None)


def form_login(url, browser, who=ALICE, remember=False, headers=None):
    page = browser.get(url + "/login", headers=headers)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    data = {**who, "csrf_token": token, **({"remember": "1"} if remember else {})}
    return browser.post(url + "/login", data=data, headers=headers)


def log_in(url, browser=None, who=ALICE, remember=False, headers=None):
    browser = browser if browser is not None else requests.Session()
    resp = form_login(url, browser, who, remember, headers)
    assert resp.status_code == 200, resp.text
    return browser


def token_of(url, browser, headers=None):
    return browser.get(url + "/csrf", headers=headers).json()["csrf_token"]


def post(url, browser, path, data=None, headers=None):
    return browser.post(url + path, data=data or {},
                        headers={"X-CSRF-Token": token_of(url, browser, headers), **(headers or {})})


def give(browser, name, value):
    browser.cookies.set(name, value, domain="127.0.0.1", path="/")
    return browser


def only_cookie(name, value):
    return give(requests.Session(), name, value)


def status(url, browser, headers=None):
    return browser.get(url + "/dashboard", headers=headers).status_code
