# Every target sets itself up on a fresh machine: a virtual environment in .venv with the
# package and its test extras, and (through `cioproc kafka start`) the Kafka jars.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: install test demo kafka-start kafka-stop bench bench-mapping bench-processor bench-sender bench-recovery bench-latency clean

# docker-compose 1.29.2 is installed without its dependencies only for the compose-spec JSON
# schema it ships (compose/config/compose_spec.json), which tests/test_deploy_files.py reads.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps "docker-compose==1.29.2"
	touch $@

install: $(VENV)/.installed

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
	$(PY) bench/processor.py $(ARGS)

bench-sender: install
	$(PY) bench/sender.py $(ARGS)

bench-recovery: install
	$(PY) bench/recovery.py $(ARGS)

bench-latency: install
	$(PY) bench/latency.py $(ARGS)

clean:
	-$(PY) -m cioproc.cli kafka stop
	rm -rf $(VENV) .cioproc
