"""The streaming medallion (Kafka change events -> bronze + silver) and the real-time index."""
