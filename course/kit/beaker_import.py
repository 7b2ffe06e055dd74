"""Beaker without the two drivers that no lesson's session needs until it asks for them.

When ``beaker.cache`` is first imported (``beaker.middleware`` and ``beaker.session`` import it), it
imports every backend it knows, and two of them import their driver at once: ``ext:mongodb``
imports pymongo and bson, ``ext:redis`` and ``ext:rediscluster`` import redis-py. That is about
0.27 s of CPU (measured with ``python -X importtime``) in every process that uses a session: the
student's ``check``, every lesson app a test starts, every sandbox of the grader. No lesson uses
those three Beaker backends as they are: the kit's own (:mod:`course.kit.beaker_backends`) import
redis-py and pymongo when a Redis or MongoDB store is made.

:func:`import_beaker` imports ``beaker.cache`` with those drivers hidden, then forgets the three
Beaker modules that were loaded without them and lets Beaker's table of backends load each again,
with its driver, the first time it is asked for it. So ``from beaker.ext import mongodb`` and
``type="ext:redis"`` still work as Beaker documents them, only later.
"""
from __future__ import annotations

import importlib
import sys

HIDDEN_DRIVERS = ("pymongo", "bson", "redis")
DEFERRED = {                          # Beaker's backend name -> its module, its class
    "ext:mongodb": ("beaker.ext.mongodb", "MongoNamespaceManager"),
    "ext:redis": ("beaker.ext.redisnm", "RedisNamespaceManager"),
    "ext:rediscluster": ("beaker.ext.redisclusternm", "RedisClusterNamespaceManager"),
}


class BackendsLoadedOnFirstUse(dict):
    """Beaker's ``clsmap`` table (``beaker.cache._backends._clsmap``) with the deferred backends
    imported, driver and all, the first time Beaker looks one up."""

    def __missing__(self, name):
        if name not in DEFERRED:
            raise KeyError(name)
        module, cls = DEFERRED[name]
        self[name] = getattr(importlib.import_module(module), cls)
        return self[name]


def import_beaker() -> None:
    """Import ``beaker.cache`` without pymongo and redis-py; nothing when it is already imported."""
    if "beaker.cache" in sys.modules:
        return
    hidden = [name for name in HIDDEN_DRIVERS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None      # `import name` raises ImportError: Beaker's modules take the driver as missing
    try:
        import beaker.cache
        import beaker.ext
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    for module, _ in DEFERRED.values():             # loaded without their driver: imported again when asked for
        sys.modules.pop(module, None)
        beaker.ext.__dict__.pop(module.rpartition(".")[2], None)
    table = beaker.cache.clsmap._clsmap
    beaker.cache.clsmap._clsmap = BackendsLoadedOnFirstUse(
        {name: cls for name, cls in table.items() if name not in DEFERRED})
