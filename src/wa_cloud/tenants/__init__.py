"""Tenants, their API keys, numbers and Meta apps."""
