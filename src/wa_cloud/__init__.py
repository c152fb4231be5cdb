"""wa-cloud: a multi-tenant WhatsApp Cloud API webhook service."""

__version__ = "0.1.0"
