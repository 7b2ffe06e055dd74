"""When the session store is down: one exception, one list of errors, one answer (503).

A session store on another machine (Redis, PostgreSQL, memcached...) can be unreachable for a
moment. That is not a bug in the app (a 500) and not a reason to carry on with a new, empty session
(the visitor's data is safe in the store and comes back with it): the answer is
``503 Service Unavailable`` with one plain line, :data:`MESSAGE`, and the next request tries again.
Every session layer of the course answers it from here:

* :class:`StoreUnavailable` - what a store raises when it cannot be reached (a ``ConnectionError``);
  :class:`course.kit.stores.CountingStore` raises it when told to fail, and
  :mod:`course.kit.stores_beaker` turns each driver's error into it.
* :func:`store_errors` - the exceptions that mean "the store is down": :class:`StoreUnavailable`,
  ``ConnectionError``, ``TimeoutError``, and the drivers' own (redis-py, SQLAlchemy, psycopg,
  PyMySQL, python-memcached, pymongo), for the drivers that are imported.
* :func:`is_store_down` - whether an exception raised *inside a store's own method* means it is down.
* :func:`respond` - the 503 as a WSGI answer; :func:`guard` - a WSGI wrapper that answers it for
  a store error escaping the app; :data:`plugin` - a Bottle plugin that answers it for a store error
  in a route (:func:`plugin_with` makes one with another answer).
"""
from __future__ import annotations

import functools
import logging
import sys
from typing import Callable

import bottle

__all__ = ["MESSAGE", "STATUS", "StoreUnavailable", "store_errors", "is_store_down", "answer",
           "respond", "guard", "plugin", "plugin_with"]

log = logging.getLogger("course.kit.storedown")

MESSAGE = "Session store unavailable"
"""The one line a visitor reads when the store is down (the course's contract checks for it)."""
STATUS = "503 Service Unavailable"
RETRY_AFTER = "1"          # seconds: a store that blinked is usually back by the next request


class StoreUnavailable(ConnectionError):
    """The session store cannot be reached (a ``ConnectionError``, so ``except OSError`` sees it too)."""


# Each driver's "cannot reach the server" errors, looked up only once the driver is imported.
_DRIVER_ERRORS = (
    ("redis.exceptions", ("ConnectionError", "TimeoutError")),
    ("sqlalchemy.exc", ("OperationalError", "InterfaceError", "DisconnectionError")),
    ("psycopg", ("OperationalError", "InterfaceError")),
    ("pymysql.err", ("OperationalError", "InterfaceError")),
    ("memcache", ("_ConnectionDeadError",)),     # python-memcached mostly answers None instead
    ("pymongo.errors", ("ConnectionFailure",)),  # ServerSelectionTimeoutError is one
)


def store_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the session store cannot be reached".

    :class:`StoreUnavailable`, ``ConnectionError``, ``TimeoutError``, and the errors of each driver
    this process has imported: a driver's error can only come from a driver that is loaded, and
    importing the others to look (pymongo, SQLAlchemy, psycopg...) cost half a second of CPU on the
    first store error of every process. Use it as ``except store_errors():``; it is worked out
    each time (a few dictionary lookups), so a driver imported later is in it.
    """
    found: list[type[BaseException]] = [StoreUnavailable, ConnectionError, TimeoutError]
    for module_name, names in _DRIVER_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None:
            found.extend(getattr(module, name) for name in names if hasattr(module, name))
    return tuple(dict.fromkeys(found))


def is_store_down(exc: BaseException) -> bool:
    """Whether ``exc``, raised inside a store's own method, means the store is down.

    :func:`store_errors`, and any ``OSError`` as well: inside a store, a disk or a socket failing
    is the store failing (around a route, an ``OSError`` may be anything, so it is not in the list).
    """
    return isinstance(exc, (*store_errors(), OSError))


def answer(exc: BaseException | None = None) -> tuple[str, str]:
    """``(status line, message)`` for a store that is down: ``(STATUS, MESSAGE)``."""
    return STATUS, MESSAGE


def respond(start_response, status: str = STATUS, message: str = MESSAGE, exc_info=None) -> list[bytes]:
    """Answer a WSGI request with ``status`` and one line of text (default: the store-down 503).

    No ``Set-Cookie`` goes out: the browser keeps the session it had. Returns the body to return.
    """
    body = (message if message.endswith("\n") else message + "\n").encode("utf-8")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
               ("Cache-Control", "no-store")]
    if status.startswith("503"):
        headers.append(("Retry-After", RETRY_AFTER))
    start_response(status, headers, exc_info)
    return [body]


def guard(wsgi_app, answer: Callable[[BaseException], tuple[str, str]] = answer):
    """WSGI wrapper: a store error escaping ``wsgi_app`` is answered by ``answer`` (default: the 503).

    Beaker's own ``SessionMiddleware`` saves the session in ``start_response``, after the route has
    run, so a store that fails then escapes every route-level handler; this catches it.
    """

    def guarded(environ, start_response):
        try:
            return wsgi_app(environ, start_response)
        except store_errors() as exc:
            log.warning("the session store failed: %r", exc)
            status, message = answer(exc)
            return respond(start_response, status, message, sys.exc_info())

    return guarded


def plugin_with(answer: Callable[[BaseException], tuple[str, str]] = answer,
                also: tuple[type[BaseException], ...] = ()) -> Callable:
    """A Bottle plugin: a route that raises a store error (or one of ``also``) is answered by ``answer``.

    ``answer(exc)`` gives ``(status line, message)``. Headers the route already set on
    ``bottle.response`` are kept (it is Bottle's response that is answered).
    """

    def store_down_plugin(callback):
        @functools.wraps(callback)
        def wrapper(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except (*store_errors(), *also) as exc:
                log.warning("the session store failed: %r", exc)
                status, message = answer(exc)
                bottle.response.status = status
                bottle.response.content_type = "text/plain; charset=utf-8"
                bottle.response.set_header("Cache-Control", "no-store")
                if str(status).startswith("503"):
                    bottle.response.set_header("Retry-After", RETRY_AFTER)
                return message if message.endswith("\n") else message + "\n"

        return wrapper

    return store_down_plugin


plugin = plugin_with()
"""Bottle plugin, ``app.install(storedown.plugin)``: a store error in a route is the 503.

Beaker loads a session inside the route that first reads it, so this is where a store that is down
shows up while loading; saving is :class:`course.kit.beakerkit.HardenedSessions`'s (or :func:`guard`'s)."""
