"""Delivery of commands to Customer.io's Track API (v2 batch by default, v1 on request).

Pure core: :mod:`payloads` (command -> request), :mod:`packing` (entries -> batches within the
size limits), :mod:`responses` (response -> verdict, retry delays), :mod:`ratelimit` (token
bucket). Shell: :mod:`client` (the aiohttp session) and :mod:`delivery` (:class:`Deliverer`).
"""

from cioproc.sender.delivery import Deliverer, Outcome, SenderConfig, SenderConfigError, SenderStats

__all__ = ["Deliverer", "Outcome", "SenderConfig", "SenderConfigError", "SenderStats"]
