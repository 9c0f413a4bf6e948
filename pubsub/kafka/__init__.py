"""Kafka interoperability. Nothing on pubsub's produce/consume path imports this package."""
