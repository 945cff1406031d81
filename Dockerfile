# The cioproc image used by docker-compose.yml: topic init, processor, sender and sandbox.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md topics.yaml ./
COPY cioproc ./cioproc
RUN pip install --no-cache-dir ".[rocksdb]"
ENV CIOPROC_TOPICS_FILE=/app/topics.yaml \
    CIOPROC_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
ENTRYPOINT ["cioproc"]
CMD ["worker", "--role", "all"]
