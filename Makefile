# The two commands a newcomer needs:
#   make run    set everything up and serve the platform at http://localhost:8000
#   make test   set everything up and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-postgres bench stress install migrate demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py loaddemo

run: demo
	$(BIN)/python manage.py runserver localhost:8000

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# 60 s of many clients against a real server (tests/scale/test_load.py); the figures go
# to bench/README.md's "Stress" section. The suite runs the same test for 10 s.
stress: install
	STRESS_SECONDS=60 STRESS_REPORT=bench/README.md $(BIN)/python -m pytest -m stress tests/scale -q -s $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
