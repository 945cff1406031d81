#!/usr/bin/env bash
# The test command behind `make test`: a real Kafka for the run, stopped afterwards even
# when tests fail. A broker that cannot start fails the run; Kafka tests are never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export CIOPROC_HOME="${CIOPROC_HOME:-$PWD/.cioproc/test}"
export CIOPROC_KAFKA_PORT="${CIOPROC_TEST_KAFKA_PORT:-29092}"
export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${CIOPROC_KAFKA_PORT}"
export CIOPROC_ENV_FILE=/dev/null/none   # a developer's .env must not leak into tests

# Fresh broker state each run: tests create their own topics and expect none left over.
"$PY" -m cioproc.cli kafka stop >/dev/null 2>&1 || true
rm -rf "$CIOPROC_HOME/kafka/$CIOPROC_KAFKA_PORT"
"$PY" -m cioproc.cli kafka start
trap '"$PY" -m cioproc.cli kafka stop' EXIT
"$PY" -m pytest -p no:cacheprovider "$@"
