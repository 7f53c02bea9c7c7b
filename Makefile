# Two commands for users (README): `make run` and `make test`. Everything else is plumbing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKSPACE ?= workspace
PORT ?= 8501
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)

.PHONY: run test test-fast sample install install-test browser bench clean

# The dashboard opens $$CRC_TIME_WORKSPACE when set, else the workspace used last, else ./workspace
# (the sample, built here the first time).
run: install $(WORKSPACE)/clinical.csv
	$(BIN)/streamlit run app.py --server.port $(PORT)

test: install-test browser
	$(BIN)/python -m pytest -q -rs --durations=15

# The fast lane while you work: everything but the tests marked slow (browser walk, trainings,
# kill and resume, benchmarks). `make test` is what CI runs.
test-fast: install-test
	$(BIN)/python -m pytest -q -rs -m "not slow" --durations=10

sample: install
	$(BIN)/crc-time --workspace $(WORKSPACE) sample

$(WORKSPACE)/clinical.csv: | $(VENV)/.installed
	$(BIN)/crc-time --workspace $(WORKSPACE) sample

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-radiomics.txt pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	@# PyRadiomics is built from source (a C compiler is needed); without it only the feature
	@# agreement is missing, so a failed build warns instead of stopping the install.
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-radiomics.txt \
		|| echo "WARNING: PyRadiomics could not be built (is a C compiler installed?); reader feature agreement is disabled."
	touch $@

$(VENV)/.installed-test: requirements-dev.txt requirements-reference.txt $(VENV)/.installed
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -r requirements-reference.txt
	@# rt-utils 1.2.7 ships its own top-level `tests` package, which would shadow ours.
	$(BIN)/python -c "import importlib.metadata as m, shutil; d = m.distribution('rt-utils'); \
		[shutil.rmtree(d.locate_file('tests'), ignore_errors=True) for f in d.files or [] if str(f) == 'tests/__init__.py']"
	@# PyRadiomics' real CT volumes for the DICOM tests, from the sdist on the package index, into
	@# a cache outside the repository; without them those tests skip, saying so.
	$(BIN)/python tests/fetch_pyradiomics_data.py || echo "WARNING: PyRadiomics' lung volumes could not be fetched; the real-CT DICOM tests will skip."
	touch $@

# The browser walk drives Debian's chromium through Playwright; never a browser download.
browser:
	@if [ -z "$(CHROMIUM)" ]; then \
		echo "Installing Debian's chromium for the browser walk"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

bench: install
	for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache
