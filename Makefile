# s3course: `make lab` to learn, `make test` to check everything, `make notebooks` to refresh.
# Both set up .venv from the exact pins in requirements.txt on first use. The pins are for
# Python 3.11+ (numpy 2.4 and scipy 1.17 need it); the s3lib package itself supports 3.10+.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.s3course-installed
KERNEL := s3course
# extra arguments: `make lab ARGS=--no-browser`, `make test PYTEST_ARGS="-k flow"`
ARGS ?=
PYTEST_ARGS ?=
# test processes (pytest-xdist); each notebook's cells stay together in one (--dist loadfile)
JOBS ?= 2
# committed outputs always come from the full configuration, one thread and a fixed hash seed
RUN_ENV := env -u S3_QUICK -u S3_THREADS PYTHONHASHSEED=0

.PHONY: help setup lab test notebooks student book browser clean
# a half-made target (e.g. a venv whose creation failed) is removed, never mistaken for done
.DELETE_ON_ERROR:

# root needs no sudo; anyone else needs password-less sudo for apt-get
APT = $$([ "$$(id -u)" = 0 ] && echo env || echo sudo -n env) DEBIAN_FRONTEND=noninteractive apt-get

help:
	@echo "make lab        set up .venv if needed and open JupyterLab on notebooks/ (ARGS=...)"
	@echo "make test       set up, install Debian's chromium if missing, run every test"
	@echo "make notebooks  re-execute every notebook in place to refresh committed outputs"
	@echo "make student    write student copies (solutions blanked) to student/"
	@echo "make book       build the course website (static HTML) into build/book/"
	@echo "make clean      remove .venv and caches"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: the pinned environment needs Python >= 3.11; run e.g. 'make PYTHON=python3.11 lab'"; exit 1; }
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  echo "Python's venv support is missing; installing Debian's python3-venv"; \
	  $(APT) update -qq && $(APT) install -y -qq python3-venv >/dev/null; } || { \
	  echo "error: install python3-venv (Debian/Ubuntu) or use a Python with ensurepip"; exit 1; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }

$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (s3course)"
	@# an offline classroom needs no "get notified about Jupyter news?" pop-up
	$(BIN)/jupyter labextension disable --level=sys_prefix @jupyterlab/apputils-extension:announcements
	@touch $@

setup: $(STAMP)

lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks --ServerApp.ip=127.0.0.1 \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root) \
	  --LabApp.news_url=None \
	  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate $(ARGS)

# Debian's chromium drives the browser test (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test"; \
	  $(APT) update -qq && $(APT) install -y -qq chromium >/dev/null; } || { \
	  echo "error: could not install chromium: run 'sudo apt-get install chromium' (root or password-less sudo is needed)"; exit 1; }

test: setup browser
	$(RUN_ENV) $(BIN)/python -m pytest -n $(JOBS) --dist loadfile $(PYTEST_ARGS)

notebooks: setup
	$(RUN_ENV) $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.kernel_name=$(KERNEL) --ExecutePreprocessor.timeout=1800 \
	  notebooks/[0-9][0-9]*_*.ipynb

# student copies: each nbgrader solution region blanked, exercise outputs cleared (s3lib.student)
student: setup
	$(BIN)/python -m s3lib.student --src notebooks --out student

# the course as a website from the committed notebooks, nothing re-run (s3lib.book)
book: setup
	$(BIN)/python -m s3lib.book --src notebooks --out build/book

clean:
	rm -rf $(VENV) .pytest_cache tests/_artifacts
	find . -name __pycache__ -prune -exec rm -rf {} +
