"""Kafka-side plumbing: the local development broker and topics as code."""
