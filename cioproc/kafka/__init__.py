"""Kafka-side plumbing: the local development broker and topics as code."""


def client_id(purpose: str) -> str:
    """The Kafka client id of a cioproc process: ``cioproc-<worker role or command>`` (see `cioproc status`)."""
    return f"cioproc-{purpose}"
