"""Shared fixtures. Kafka tests need the real broker that `make test` starts; a missing
broker fails them (never skips them)."""

from __future__ import annotations

import os
import uuid

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The bootstrap address of the real test broker; fails the test if it does not answer."""
    from cioproc.kafka.broker import answers_metadata

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if not bootstrap:
        pytest.fail("KAFKA_BOOTSTRAP_SERVERS is not set: run the suite with `make test`, which starts Kafka")
    if not answers_metadata(bootstrap, timeout=15.0):
        pytest.fail(f"no Kafka broker answers at {bootstrap}: run the suite with `make test`, which starts Kafka")
    return bootstrap


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names, so tests never share Kafka state."""
    return uuid.uuid4().hex[:10]
