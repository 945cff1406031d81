#!/usr/bin/env bash
# The command behind `make bench-*`: runs one benchmark against a real local Kafka. A broker
# that already answers on CIOPROC_KAFKA_PORT (default 9092) is used as it is; otherwise one is
# started for the run and stopped afterwards, also when the benchmark fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
script=$1
shift
export CIOPROC_ENV_FILE="${CIOPROC_ENV_FILE:-/dev/null/none}"   # a developer's .env must not change the figures
port="${CIOPROC_KAFKA_PORT:-9092}"
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${port}}"
if ! "$PY" -m cioproc.cli kafka status --port "$port" >/dev/null 2>&1; then
    "$PY" -m cioproc.cli kafka start --port "$port"
    trap '"$PY" -m cioproc.cli kafka stop --port "$port"' EXIT
fi
"$PY" "$script" "$@"
