"""The narrow interface between the grader's tests and a sandboxed lesson: frames of JSON, both ways.

Both sides use this module: the grader (course.tools.grading.sandbox) and the sandbox host
(course.tools.grading.host). A frame is 4 bytes of length and a JSON object. Values cross as
plain JSON where they can; bytes, tuples, sets and dicts with other keys are tagged
(``{"$b": base64}``...), so ``sign(b"...")`` gets bytes and ``== ("a", 1)`` still holds. Any
other object stays where it lives and crosses as a handle: an object of the host's
(``{"$h": 7}``, a ``MemoryStore()`` the test made through the module) or of the grader's
(``{"$g": 3}``, a test's ``Clock()`` or counting store handed to ``create_app``). A handle's
methods are called back over the wire on the side that owns it.

An exception crosses as its class's name and the names of its built-in bases, and is raised on
the other side as a class of the same name deriving from the nearest built-in one, so
``pytest.raises(ValueError)`` and ``pytest.raises(app_module.LockBusy)`` work as in-process.
"""
from __future__ import annotations

import argparse
import base64
import builtins
import itertools
import json
import socket
import struct
import threading

MAX_FRAME = 64 << 20
CALLABLE_DUNDERS = {"__call__", "__enter__", "__exit__", "__len__", "__getitem__", "__setitem__", "__delitem__",
                    "__contains__", "__iter__", "__bool__"}
"""The special methods a handle forwards; every other name that starts with ``_`` is refused."""


class WireError(Exception):
    """The other side sent something that is not a frame of this protocol, or went away."""


def send(sock: socket.socket, message: dict) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise WireError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket) -> dict:
    (size,) = struct.unpack(">I", _exactly(sock, 4))
    if size > MAX_FRAME:
        raise WireError(f"a frame of {size} bytes is more than {MAX_FRAME}")
    message = json.loads(_exactly(sock, size))
    if not isinstance(message, dict):
        raise WireError("a frame is a JSON object")
    return message


def allowed_name(name: str) -> bool:
    return isinstance(name, str) and (not name.startswith("_") or name in CALLABLE_DUNDERS)


class Objects:
    """The objects of one side that the other holds handles to: handle number -> object."""

    def __init__(self):
        self.by_id: dict[int, object] = {}
        self._keys: dict[int, int] = {}          # id(object) -> handle; by_id keeps the object alive
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, value) -> int:
        with self._lock:
            key = self._keys.get(id(value))
            if key is None:
                key = next(self._ids)
                self.by_id[key], self._keys[id(value)] = value, key
            return key

    def get(self, key) -> object:
        try:
            return self.by_id[key]
        except (KeyError, TypeError):
            raise WireError(f"no object with handle {key!r} here") from None


def builtin_bases(cls: type) -> list[str]:
    """The names of the built-in classes in ``cls``'s MRO, nearest first (``ValueError``, ``Exception``)."""
    return [base.__name__ for base in cls.__mro__ if getattr(builtins, base.__name__, None) is base]


STANDARD_EXCEPTIONS = {"argparse.ArgumentTypeError": argparse.ArgumentTypeError}
"""Exceptions of the standard library a test expects by class (08.2's ``type=`` function): raised as
themselves. Safe to trust by name: the copy could raise the real class as well."""
_CLASSES: dict[tuple, type] = {}
_CLASSES_LOCK = threading.Lock()


def exception_class(name: str, bases: list[str]) -> type:
    """A class named ``name`` deriving from the first built-in exception class of ``bases``; one per pair."""
    base = next((getattr(builtins, each) for each in bases
                 if isinstance(getattr(builtins, each, None), type) and issubclass(getattr(builtins, each),
                                                                                    BaseException)),
                Exception)
    if name == base.__name__:
        return base
    with _CLASSES_LOCK:
        key = (name, base)
        if key not in _CLASSES:
            _CLASSES[key] = type(name, (base,), {"__module__": "sandboxed"})
        return _CLASSES[key]


class Codec:
    """Values to JSON and back, for one side: ``mine`` tags its own objects, ``theirs`` the other's."""

    def __init__(self, mine: str, theirs: str, objects: Objects, remote, passable=lambda value: True):
        self.mine, self.theirs, self.objects, self.remote, self.passable = mine, theirs, objects, remote, passable

    def encode(self, value, plain_dicts: bool = False):
        """``value`` as JSON; with ``plain_dicts``, an instance of a dict subclass crosses as its items."""
        if value is None or isinstance(value, (bool, str)) or type(value) in (int, float):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and type(value).__module__ == "builtins":
            return int(value)
        if type(value) is list:
            return [self.encode(each, plain_dicts) for each in value]
        if plain_dicts and isinstance(value, dict) and not isinstance(value, Remote):
            value = dict(value)
        if type(value) is dict and all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: self.encode(v, plain_dicts) for k, v in value.items()}
        if type(value) is dict:
            return {"$d": [[self.encode(k, plain_dicts), self.encode(v, plain_dicts)] for k, v in value.items()]}
        if type(value) is tuple:
            return {"$t": [self.encode(each, plain_dicts) for each in value]}
        if type(value) in (bytes, bytearray):
            return {"$b": base64.b64encode(bytes(value)).decode()}
        if type(value) in (set, frozenset):
            return {"$s": [self.encode(each) for each in value]}
        remote = getattr(value, "_wire_handle", None)
        if isinstance(value, Remote) and remote is not None and remote[0] is self:
            return {self.theirs: remote[1]}
        if isinstance(value, type) and issubclass(value, BaseException):
            return {"$e": [value.__name__, builtin_bases(value)]}
        if not self.passable(value):
            raise TypeError(f"a {type(value).__name__} cannot be handed to the code under test")
        return {self.mine: self.objects.add(value)}

    def decode(self, value):
        if isinstance(value, list):
            return [self.decode(each) for each in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (tag, body), = value.items()
            if tag == "$d":
                return {self.decode(k): self.decode(v) for k, v in body}
            if tag == "$t":
                return tuple(self.decode(each) for each in body)
            if tag == "$b":
                return base64.b64decode(body)
            if tag == "$s":
                return {self.decode(each) for each in body}
            if tag == "$e":
                return exception_class(str(body[0]), [str(each) for each in body[1]])
            if tag == self.mine:
                return self.objects.get(body)
            if tag == self.theirs:
                return self.remote(body)
        return {k: self.decode(v) for k, v in value.items()}


def error_frame(exc: BaseException, trace: str = "") -> dict:
    return {"err": {"type": type(exc).__name__, "bases": builtin_bases(type(exc)),
                    "module": str(getattr(type(exc), "__module__", "")), "message": str(exc)[:4000],
                    "trace": trace[-4000:]}}


def raise_error(err: dict):
    """Raise what the other side raised, as a class of the same name (see ``exception_class``)."""
    cls = STANDARD_EXCEPTIONS.get(f"{err.get('module')}.{err.get('type')}") or \
        exception_class(str(err.get("type")), [str(b) for b in err.get("bases") or []])
    message = str(err.get("message", ""))
    try:
        exc = cls(message)
    except Exception:
        exc = Exception(f"{err.get('type')}: {message}")
    exc.remote_trace = str(err.get("trace", ""))
    raise exc


class Remote:
    """An object that lives on the other side, reached through ``call`` (the side's own function).

    ``call(op, **fields)`` sends one request and returns the decoded answer (or raises).
    """

    __slots__ = ("_wire_handle", "_wire_call")

    def __init__(self, codec: Codec, key: int, call):
        object.__setattr__(self, "_wire_handle", (codec, key))
        object.__setattr__(self, "_wire_call", call)

    def _invoke(self, name, *args, **kwargs):
        return self._wire_call("call", target=self._wire_handle[1], name=name, args=list(args), kwargs=kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._wire_call("getattr", target=self._wire_handle[1], name=name)

    def __setattr__(self, name, value):
        self._wire_call("setattr", target=self._wire_handle[1], name=name, value=value)

    def __call__(self, *args, **kwargs):
        return self._invoke("__call__", *args, **kwargs)

    def __enter__(self):
        return self._invoke("__enter__")

    def __exit__(self, *exc):
        return self._invoke("__exit__", None, None, None) if exc[0] is None else \
            self._invoke("__exit__", exc[0], str(exc[1]), None)

    def __len__(self):
        return self._invoke("__len__")

    def __getitem__(self, key):
        return self._invoke("__getitem__", key)

    def __setitem__(self, key, value):
        self._invoke("__setitem__", key, value)

    def __delitem__(self, key):
        self._invoke("__delitem__", key)

    def __contains__(self, key):
        return self._invoke("__contains__", key)

    def __iter__(self):
        return iter(self._invoke("__iter__"))

    def __bool__(self):
        return bool(self._invoke("__bool__"))

    def __repr__(self):
        return f"<sandboxed object {self._wire_handle[1]}>"


def call_on(obj, name: str, args: list, kwargs: dict):
    """What a ``call`` request does to one of this side's objects (the dunders a handle forwards)."""
    if not allowed_name(name):
        raise PermissionError(f"{name!r} cannot be called across the sandbox")
    if name == "__iter__":
        return list(obj)
    if name == "__bool__":
        return bool(obj)
    if name == "__len__":
        return len(obj)
    if name == "__contains__":
        return args[0] in obj
    if name == "__getitem__":
        return obj[args[0]]
    if name == "__setitem__":
        obj[args[0]] = args[1]
        return None
    if name == "__delitem__":
        del obj[args[0]]
        return None
    if name == "__exit__":
        return obj.__exit__(None, None, None)
    if name == "__call__":
        return obj(*args, **kwargs)      # not getattr(obj, "__call__"): a class's is its instances' method
    return getattr(obj, name)(*args, **kwargs)
