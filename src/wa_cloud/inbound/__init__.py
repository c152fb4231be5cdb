"""Webhooks in: signature, group commit, parsing into typed events, indexing."""
