"""The durable outbox: enqueue, compose, pace, send, record."""
