"""Reading a running worker or sandbox over HTTP, for the demo, tests and benchmarks: a free
local port, a JSON GET, and Prometheus samples (scraped, summed, a histogram's quantile)."""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_json(url: str, timeout: float = 10, token: str | None = None) -> Any:
    """GET a JSON answer; ``token``: the sandbox's admin token (its /_sandbox/* routes need it)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, sorted labels) -> value


def scrape(url: str) -> Samples:
    """Prometheus samples as {(name, sorted labels): value}; {} if the endpoint is not up yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def latency_quantile(samples: Samples, q: float, name: str = "cioproc_end_to_end_latency_seconds") -> float | None:
    """The ``q`` quantile (seconds) of a scraped histogram; None without observations."""
    from cioproc.observability.metrics import histogram_quantile

    buckets = [(float(dict(ls)["le"]), v) for (n, ls), v in samples.items() if n == name + "_bucket"]
    value = histogram_quantile(q, buckets)
    return None if value is None else round(value, 3)


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, ls), v in samples.items():
        if n == name:
            key = dict(ls).get(label, "")
            out[key] = out.get(key, 0) + v
    return {k: v for k, v in sorted(out.items()) if v}
