# Every target sets itself up on a fresh machine: a virtual environment in .venv with the
# package and its test extras, and (through `cioproc kafka start`) the Kafka jars.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

LOCK := requirements.lock

.PHONY: install lock check test demo kafka-start kafka-stop bench bench-mapping bench-processor bench-sender bench-recovery bench-latency clean

# Exact versions from the lock, then the package itself without resolving again; `pip check`
# fails when pyproject.toml asks for something the lock lacks (then: make lock).
# docker-compose 1.29.2 is installed afterwards without its dependencies only for the
# compose-spec JSON schema it ships (compose/config/compose_spec.json), which
# tests/test_deploy_files.py reads.
$(VENV)/.installed: pyproject.toml $(LOCK) Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	@# (docker-compose, below, is installed without its dependencies on purpose: its lines are not ours)
	@if $(PY) -m pip check 2>&1 | grep -v -e '^docker-compose ' -e '^No broken requirements' | grep .; then \
		echo "$(LOCK) does not satisfy pyproject.toml: run make lock" >&2; exit 1; fi
	$(PY) -m pip install -q --no-deps "docker-compose==1.29.2"
	touch $@

install: $(VENV)/.installed

# Refresh the lock from pyproject.toml (all extras the tests use), e.g. after a merge added a
# dependency. Newest versions allowed by pyproject.toml, for Python 3.11 on any platform.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "uv>=0.9"
	$(PY) -m uv pip compile pyproject.toml --extra test --extra rocksdb --universal \
		--python-version 3.11 --quiet --annotation-style line --custom-compile-command "make lock" -o $(LOCK)

# Lint and type checks (.ci/run runs them before the tests; both must report nothing).
check: install
	$(PY) -m ruff check cioproc tests bench
	$(PY) -m mypy

test: install
	PY=$(PY) scripts/test.sh $(ARGS)

demo: install
	$(PY) -m cioproc.cli demo $(ARGS)

kafka-start: install
	$(PY) -m cioproc.cli kafka start

kafka-stop: install
	$(PY) -m cioproc.cli kafka stop

bench-mapping: install
	$(PY) bench/mapping.py $(ARGS)

bench-processor: install
	PY=$(PY) scripts/bench.sh bench/processor.py $(ARGS)

bench-sender: install
	PY=$(PY) scripts/bench.sh bench/sender.py $(ARGS)

bench-recovery: install
	PY=$(PY) scripts/bench.sh bench/recovery.py $(ARGS)

bench-latency: install
	PY=$(PY) scripts/bench.sh bench/latency.py $(ARGS)

clean:
	-$(PY) -m cioproc.cli kafka stop
	rm -rf $(VENV) .cioproc
