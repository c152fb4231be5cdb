"""The HTTP API: admin, tenant and operations routes, and their shared request handling."""
