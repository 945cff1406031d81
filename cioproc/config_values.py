"""The value types and value checks of the configuration (:mod:`cioproc.config`): secrets
that never print themselves, user info masked out of URLs, hosts, ports and the Track URL."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

REGION_HOSTS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
TRUE = {"true", "1", "yes", "on"}
FALSE = {"false", "0", "no", "off"}
SECURITY_PROTOCOLS = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
SASL_MECHANISMS = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"}
ROLES = ("processor", "sender", "all")
SASL_WITH_PASSWORD = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}  # need KAFKA_SASL_USERNAME and _PASSWORD
_HOST_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(\.{_HOST_LABEL})*\.?")
# up to the last @ of a URL (a password may hold one)
_USER_INFO = re.compile(r"(^|,)(\s*[A-Za-z][A-Za-z0-9+.-]*://)?[^,\s]*@")


class Secret:
    """A string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def mask_user_info(text: str) -> str:
    """``text`` with the user info of any URL or ``user@host`` in it replaced by ``****``."""
    return _USER_INFO.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}****@", text)


def valid_listen_host(host: str) -> bool:
    """An IP address (v4 or v6) or a DNS host name."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?", host))


def valid_host_port(part: str) -> bool:
    host, sep, port = part.strip().rpartition(":")
    return bool(sep and valid_host(host) and port.isdigit() and 0 < int(port) < 65536)


def valid_host(host: str) -> bool:
    """A DNS name or IPv4 address (a trailing dot allowed), or an IPv6 address in brackets."""
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    return bool(_HOST_NAME.fullmatch(host))


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1, with or without a trailing dot (``host`` as in a URL)."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def track_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the Track API base URL (None: it can)."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("http", "https") or not rest:
        return "must be an http:// or https:// URL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port out of range or not a number, a broken IPv6 literal
        return f"is not a valid URL ({exc}): use https://host[:port]"
    if "@" in parts.netloc:
        return "must not carry user info: set CIO_SITE_ID and CIO_API_KEY instead"
    host = parts.netloc.rpartition(":")[0] if parts.port is not None or parts.netloc.endswith(":") else parts.netloc
    if not valid_host(host):
        return "has no valid host (an IPv6 address goes in brackets: https://[::1]:8443)"
    if port == 0:
        return "has port 0: use a TCP port from 1 to 65535"
    if parts.path not in ("", "/") or parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must be the API's base URL alone (https://host[:port]): no path, query or fragment"
    if scheme == "http" and not is_loopback(host):
        return "uses plain http to a host that is not loopback: use https (http only for localhost, 127.0.0.0/8, ::1)"
    return None


def rocksdb_installed() -> bool:
    try:
        import rocksdict  # noqa: F401  (the `rocksdb` extra)
    except ImportError:
        return False
    return True

