"""Settings of the integration that change what the mapping produces (not where it is sent)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class UserIdType(str, Enum):
    """Which mParticle identity becomes the Customer.io identifier ("User ID Type")."""

    CUSTOMER_ID = "customer_id"
    EMAIL = "email"
    PREFER_CUSTOMER_ID = "prefer_customer_id"


@dataclass(frozen=True, slots=True)
class MappingSettings:
    """The integration's configuration and connection settings that shape commands."""

    user_id_type: UserIdType = UserIdType.PREFER_CUSTOMER_ID
    include_user_attributes: bool = True
    send_created_at: bool = False
    audience_attribute_per_segment: bool = False
    transport: str = "v2"  # CIO_TRANSPORT: "v1" events may carry up to 100,000 bytes of data
    merge_people: bool = False  # merge Customer.io people on a genuinely newer identifier change
    forward_devices: bool = False  # CIO_FORWARD_DEVICES: push tokens -> Customer.io devices
    erasure_action: str = "delete"  # CIO_ERASURE_ACTION: "delete", or "suppress" (delete and block the identifiers)
