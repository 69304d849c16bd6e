# The README's commands. Every target sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-rust test-python test-upstream bench lint install venv wheel crash-build second-sqlite-build clean

$(VENV)/.created:
	bash scripts/system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.7,<2"
	touch $@

venv: $(VENV)/.created

# Builds the extension (release) and installs it with every test/demo dependency.
install: venv
	$(PY) -m pip install -q ".[test]"

demo: install
	$(PY) -m fastcheckpoint.demo

test-rust:
	bash scripts/system-deps.sh
	cargo test -p fastcheckpoint-core

# What a release publishes, in dist/: the sdist and the manylinux abi3 wheel.
wheel: venv
	bash scripts/wheel.sh $(VENV)

# The reliability suite's crash-point build (cargo feature `crash-points`, a debug
# build): installed into target/crash-points for the crash tests' child processes,
# never as the package.
crash-build: venv
	rm -rf target/crash-wheel target/crash-points
	$(VENV)/bin/maturin build -q --profile dev --features crash-points --auditwheel skip -o target/crash-wheel
	$(PY) -m pip install -q --no-deps --target target/crash-points target/crash-wheel/*.whl

# A deliberately mis-built extension that links a second (bundled) SQLite
# (cargo feature `second-sqlite`): the one-SQLite check must refuse it
# (tests/test_sqlite_library.py). Never the package.
second-sqlite-build: venv
	rm -rf target/second-sqlite-wheel target/second-sqlite
	$(VENV)/bin/maturin build -q --profile dev --no-default-features --features second-sqlite --auditwheel skip -o target/second-sqlite-wheel
	$(PY) -m pip install -q --no-deps --target target/second-sqlite target/second-sqlite-wheel/*.whl

# The suite runs against the built wheel, installed on CPython 3.10-3.13
# (scripts/test-installed.sh). `bash scripts/pytest.sh .venv` after `make install`
# runs it against a source build instead.
test-python: wheel crash-build second-sqlite-build
	bash scripts/test-installed.sh
	$(MAKE) test-upstream

# Upstream's own saver tests (from the sdists of the installed versions) with
# our classes swapped in, on the installed wheel (scripts/upstream_tests.py).
test-upstream:
	.venv-3.11/bin/python scripts/upstream_tests.py

test: test-rust test-python

# Every benchmark (the per-version one on the wheel just built); their tables
# are also written to docs/benchmarks.md.
bench: install wheel
	FC_BENCH_REPORT=docs/benchmarks.md $(PY) -m pytest benches -q -p no:cacheprovider --benchmark-disable -s

lint: install
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches

clean:
	rm -rf $(VENV) .venv-3.* .venv-system target dist
