"""Topic ids: the UUIDs Kafka names topics by (Metadata v10+, the share-group messages).

A pubsub file has no topic UUIDs of its own, so each is derived from the cluster id and the
topic's numeric id: stable across restarts of the server, and new for a topic deleted and
created again under the same name (it gets a new numeric id), as Kafka's are. The two UUIDs
Kafka reserves (all zeros, and 0...01 for the metadata topic) are never produced, nor one
whose base64 text starts with '-' (Kafka avoids those too: they read as a command-line flag).
"""

from __future__ import annotations

import hashlib
import uuid

__all__ = ["topic_uuid"]


def topic_uuid(cluster_id: str, topic_id: int) -> uuid.UUID:
    """The UUID of the topic with numeric id ``topic_id`` on the cluster ``cluster_id``."""
    digest = bytearray(hashlib.sha256(f"{cluster_id}\0topic\0{topic_id}".encode()).digest()[:16])
    digest[0] &= 0x7F  # base64 of a first byte below 0xF8 never starts with '-'
    digest[0] |= 0x01  # never all zeros, nor 0...01
    return uuid.UUID(bytes=bytes(digest))
