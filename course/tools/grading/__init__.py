"""The instructor's grader: ``python -m course grade SUBMISSION... --out DIR``, stage by stage.

Each submission (a student's clone or unzipped copy) is graded with the course's own tests, never
the copy's: its ``lessons/NN_slug/`` folders are copied into a fresh working folder, and one
``pytest`` process runs the course's exercise tests against them there (``--target``; the copy's
code itself runs only in sandboxes, ``--course-sandbox``), in a session of its own, with a time
limit per test (``--course-timeout``) and per submission. When the process is done, or over
time, its whole process group is killed: a submission that hangs, crashes, prints a flood, or
leaves a server, a thread or a child process running costs only itself.

Scoring: an exercise is worth the manifest's points; its tests share them by weight (the marker's
``weight=``, default 1): points = points x passed weight / total weight. A test that did not pass
(failed, error, timed out, skipped, or never ran because the submission was stopped) earns nothing.

Fair credit: an exercise whose code is still the starter's earns 0 and is not tested. An exercise
that failed is run again with the reference's code standing in for those not started, and if it
still fails, in a hybrid, the student's app.py with the lesson's other exercises taken from the
reference; a test passed in any run counts.

Outputs in ``--out``: ``gradebook.csv`` (one row per student, for a spreadsheet or an LMS),
``grades.csv`` (student x exercise), ``summary.md`` (the class, with the same-code flags),
``histogram.png``, and per student ``json/NAME.json``, ``junit/NAME.xml``, ``feedback/NAME.md``
(what passed, what failed, the first hint; never the solution) and ``logs/NAME.log`` (the test
run's output, head and tail). ``--merge`` keeps the students graded earlier into ``--out``.

The stages, one module each:

* ``find``    the submissions: which folders are students' copies, and their unique names;
* ``plan``    the lessons to grade and every exercise test they hold (collected once);
* ``worker``  the test process the grader starts (``python -m course.tools.grading.worker``);
* ``run``     one submission: copied, run in its own process group, within time and output limits;
* ``hybrid``  fair credit's source transform: one exercise the student's, the others the reference's;
* ``credit``  fair credit's runs: the hybrids of the exercises that failed, and what is not started;
* ``sandbox`` where the copy's code runs: a bubblewrap sandbox per lesson, as a user of the copy's
              own; ``host`` is the trusted module inside it, ``wire`` the narrow interface between;
* ``score``   the run's records as points per exercise, lesson and student;
* ``same``    the same-code flags: a lesson identical to the reference's or a classmate's;
* ``report``  gradebook.csv, grades.csv, summary.md, histogram.png, and each student's files;
* ``batch``   the whole class, a few submissions at a time (``grade``).

This file imports none of them, so that ``python -m course.tools.grading.worker`` starts clean.
"""
