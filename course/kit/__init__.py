"""The session library the lessons build, finished.

Each module is the reference answer of a lesson, ready for the lessons after it: ``cookies``
(reading a Cookie header, lesson 01), ``signing`` (02), ``stores`` and ``sessions`` (03-04),
``beakerkit`` (05), ``auth`` (06), ``security`` (07), ``stores_beaker`` (08). Nothing here imports
:mod:`course.lesson` or :mod:`course.tools`.
"""
