"""The session library the lessons build, finished.

Each module is the reference answer of a lesson, ready for the lessons after it: ``cookies``
(reading a Cookie header, lesson 01), ``signing`` (02), ``stores`` and ``sessions`` (03-04),
``beakerkit`` (05), ``passwords``, ``users``, ``forms`` and ``auth`` (06), ``security`` (07),
``stores_beaker`` (08); ``storedown`` is what all of them answer when the session store is down.
Nothing here imports :mod:`course.lesson` or :mod:`course.tools`.
"""
