# The cioproc image used by docker-compose.yml: topic init, processor, sender and sandbox.
# topics.yaml is configuration: mount it at /app/topics.yaml (docker-compose.yml does).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY cioproc ./cioproc
# The lock's exact versions as constraints: the tested dependency set, without the test tools.
RUN pip install --no-cache-dir -c requirements.lock ".[rocksdb]" \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin cioproc \
    && mkdir -p /data \
    && chown cioproc /data
ENV CIOPROC_TOPICS_FILE=/app/topics.yaml \
    CIOPROC_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
USER cioproc
VOLUME ["/data"]
# Prometheus /metrics, /healthz and /readyz (CIOPROC_METRICS_PORT; set CIOPROC_METRICS_HOST=0.0.0.0 to reach it).
EXPOSE 9108
ENTRYPOINT ["cioproc"]
CMD ["worker", "--role", "all"]
