# The course's commands. Every target creates .venv and installs requirements.txt on first use
# (and again whenever requirements.txt changes), so a fresh clone needs only Python 3.11+ and make.
#
#   make run [LESSON=01] [SOLUTION=1] [PORT=8080] [STORE=url] [OPTIONS="max_age=60 rolling=true"]
#                                                              serve a lesson; it restarts when you save
#   make check LESSON=01                                       check your own work on a lesson
#   make list | make hint EXERCISE=01.2 | make watch [LESSON=01]  your progress, hints, re-check on save
#   make test                                                  lint, then check the whole course (maintainers, CI)
#   make lint                                                  only the linter (ruff, configured in ruff.toml)
#   make notebooks                                             open the walkthroughs in Jupyter
#   make grade SUBMISSIONS="a/ b/" OUT=grades [MERGE=1]        grade a class (instructors): gradebook.csv and more
#   make mutate [LESSON=03] [KIT=signing] [SAMPLE=20]          mutation testing of the solutions or the kit (maintainers)
#   make services                                              start Redis, PostgreSQL, MariaDB, memcached, MongoDB in containers

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LESSON ?= 01
PORT   ?= 8080
HOST   ?= 127.0.0.1
JOBS   ?= 2

.PHONY: run check lint test notebooks grade list hint watch services venv clean mutate

# The venv is rebuilt whenever requirements.txt is newer than the stamp. A .pth file puts the
# repository root on the venv's path, so `import course` works from notebooks/ and from anywhere.
$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "This course needs Python 3.11 or newer; you have " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing the course's pinned dependencies into $(VENV) (first run only, about a minute)..."
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@$(PY) -c 'import site, pathlib; pathlib.Path(site.getsitepackages()[0], "course-root.pth").write_text(str(pathlib.Path.cwd()) + "\n")'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	@$(PY) -m course run $(LESSON) --host $(HOST) --port $(PORT) $(if $(SOLUTION),--solution) $(if $(STORE),--store $(STORE)) $(foreach option,$(OPTIONS),--option $(option))

check: $(STAMP)
	@$(PY) -m course check $(LESSON) || test $$? -eq 1

list: $(STAMP)
	@$(PY) -m course list

hint: $(STAMP)
	@$(PY) -m course hint $(or $(EXERCISE),$(LESSON))

watch: $(STAMP)
	@$(PY) -m course watch $(if $(filter-out file,$(origin LESSON)),$(LESSON))

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -n $(JOBS) --dist loadfile $(ARGS)

# Jupyter refuses to start as root without --allow-root (most containers run as root).
notebooks: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo 'usage: make grade SUBMISSIONS="copies/*" [OUT=grades] [JOBS=2] [LESSONS=01,02] [TIMEOUT=seconds] [MERGE=1]'; exit 2; }
	@$(PY) -m course grade $(SUBMISSIONS) --out $(or $(OUT),grades) $(if $(filter command line environment,$(origin JOBS)),--jobs $(JOBS)) $(if $(LESSONS),--lessons $(LESSONS)) $(if $(TIMEOUT),--timeout $(TIMEOUT)) $(if $(MERGE),--merge)

# Without LESSON or KIT: every lesson's solution. KIT=all: every kit module.
mutate: $(STAMP)
	@$(PY) -m course mutate $(if $(filter-out file,$(origin LESSON)),--lesson $(LESSON),$(if $(KIT),,--lesson)) $(if $(KIT),--kit $(filter-out all,$(KIT))) $(if $(SAMPLE),--sample $(SAMPLE)) --jobs $(JOBS)

services:
	@command -v docker >/dev/null 2>&1 || { echo "make services needs Docker (docker compose). Without it, install redis-server, postgresql, mariadb-server and memcached from your package manager and start them on their standard ports."; exit 2; }
	docker compose -f compose.yaml up -d

clean:
	rm -rf $(VENV) .pytest_cache .sessions
