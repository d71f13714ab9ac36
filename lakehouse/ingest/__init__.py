"""The streaming medallion: Kafka change events -> bronze -> silver (+ Elasticsearch)."""
