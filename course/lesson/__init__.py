"""What every lesson app stands on: ``web`` (a fresh Bottle app, ``todo()`` and its 501), ``page``
(the shared lesson page and its cookie inspector), ``server`` (the threaded server and ``main()``)
and ``manifest`` (lesson order, exercise ids, points and hints: ``manifest.toml``)."""
