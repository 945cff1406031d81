"""Metrics, health endpoints and structured, secret-free logs."""
