# The two commands of the README:
#   make run    install into .venv and serve conf/xinetd.conf (unprivileged ports)
#   make test   install into .venv (with test tools) and run every test
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: run test install install-test lint

# The compiled sub-helper, in the tree for the tests (an installation
# builds its own: setup.py).  Without a C compiler the Python one serves.
SUBHELPER = xinetd_twisted/spawn/xinetd-subhelper
CC ?= cc

$(SUBHELPER): xinetd_twisted/spawn/subhelper.c
	$(CC) -O2 -Wall -Wextra -o $@ $< || echo "no C compiler: the Python sub-helper serves"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q .

install-test: $(BIN)/python
	$(BIN)/python -m pip install -q '.[test]'

run: install
	$(BIN)/twistd -n --pidfile= xinetd --config conf/xinetd.conf

test: lint $(SUBHELPER)
	$(BIN)/python -m twisted.trial tests

LINTED = xinetd_twisted tests twisted bench examples

lint: install-test
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy xinetd_twisted
