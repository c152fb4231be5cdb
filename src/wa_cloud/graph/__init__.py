"""The Graph API: client, error table, retry policy."""
