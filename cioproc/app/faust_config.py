"""What the Faust app is configured with, derived from cioproc's :class:`~cioproc.config.Config`.

Pure functions (no Kafka I/O): the Faust settings, the Kafka credentials and
the table store. Faust's own environment variables (``BROKER_URL``, ``APP_STORE``, ...) are
not read: a worker's behaviour follows from cioproc's variables and ``topics.yaml`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faust.auth import GSSAPICredentials, SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from cioproc.config import Config, KafkaSettings, setting_for
from cioproc.errors import StartupError as StartupError  # re-exported: its home before cioproc.errors
from cioproc.kafka.topics import TopicsFile
from cioproc.names import USERS_TABLE

APP_ID_VARIABLE = setting_for("app_id").variable
TABLE_NAME = USERS_TABLE

# Producer and consumer tuning for batch processing (see cioproc.app.processor).
PRODUCER_LINGER_S = 0.005  # gather a chunk's records into few produce requests
PRODUCER_MAX_BATCH_BYTES = 512 * 1024
MAX_POLL_RECORDS = 2000
SESSION_TIMEOUT_S = 10.0  # upper bound of one chunk, i.e. of the work between two acks


def changelog_topic_name(app_id_: str, table: str = TABLE_NAME) -> str:
    """The changelog topic Faust derives for a table: ``<app id>-<table>-changelog``."""
    return f"{app_id_}-{table}-changelog"


def check_changelog_topic(app_id_: str, topics: TopicsFile) -> None:
    """Fail unless topics.yaml declares the changelog name Faust will use for the users table."""
    declared = topics.by_role("table_changelog").name
    derived = changelog_topic_name(app_id_)
    if declared != derived:
        raise StartupError(
            f"{topics.path}: the table_changelog topic is '{declared}' but app id '{app_id_}' makes Faust use "
            f"'{derived}': rename it in {topics.path.name} or set {APP_ID_VARIABLE} to match"
        )


def faust_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """Faust's credentials object for the Kafka security settings (None for PLAINTEXT)."""
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    client = kafka.aiokafka_kwargs()
    ssl_context = client.get("ssl_context")
    if protocol == "SSL":
        return SSLCredentials(ssl_context)
    mechanism = kafka.sasl_mechanism
    if mechanism == "GSSAPI":
        return GSSAPICredentials(ssl_context=ssl_context)
    if mechanism == "OAUTHBEARER":
        raise StartupError(
            "KAFKA_SASL_MECHANISM=OAUTHBEARER needs a token provider, which the worker does not support; "
            "use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or GSSAPI"
        )
    return SASLCredentials(
        username=client.get("sasl_plain_username"),
        password=client.get("sasl_plain_password"),
        ssl_context=ssl_context,
        mechanism=mechanism,
    )


def store_url(config: Config) -> str:
    """The Faust table store: in memory (default) or RocksDB through rocksdict."""
    return "rocksdb://" if config.store == "rocksdb" else "memory://"


def table_options(config: Config) -> dict[str, Any] | None:
    """Store options for the users table (the RocksDB driver)."""
    return {"driver": "rocksdict"} if config.store == "rocksdb" else None


def data_dir(config: Config, app_id_: str) -> Path:
    """Where this app's table data lives (one directory per app id)."""
    return config.data_dir / app_id_


def faust_settings(config: Config, app_id_: str) -> dict[str, Any]:
    """Keyword arguments for :class:`faust.App`."""
    servers = [part.strip() for part in config.kafka.bootstrap_servers.split(",") if part.strip()]
    return {
        "id": app_id_,
        "env": {},  # ignore Faust's own environment variables
        "broker": [f"kafka://{server}" for server in servers],
        "broker_credentials": faust_credentials(config.kafka),
        "store": store_url(config),
        "datadir": str(data_dir(config, app_id_)),
        "processing_guarantee": "at_least_once",
        "consumer_auto_offset_reset": "earliest",
        "broker_max_poll_records": MAX_POLL_RECORDS,
        "producer_acks": -1,
        "producer_linger": PRODUCER_LINGER_S,
        "producer_max_batch_size": PRODUCER_MAX_BATCH_BYTES,
        "table_standby_replicas": 1,
        # A stopped worker's partitions move after 10 s without heartbeats (Faust's default: 60).
        "broker_session_timeout": SESSION_TIMEOUT_S,
        "broker_heartbeat_interval": 3.0,
        # Topics are created by `cioproc topics apply` from topics.yaml, never implicitly.
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "web_enabled": False,
        "autodiscover": False,
        "worker_redirect_stdouts": False,
    }
