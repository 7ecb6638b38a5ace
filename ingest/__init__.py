"""Ingest: consumes MQTT v1 device messages and stores them in PostgreSQL in batches,
acknowledging each message only after the batch holding it is committed."""
