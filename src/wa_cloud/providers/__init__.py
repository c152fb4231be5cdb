"""Providers: the one interface through which everything sends, whatever carries it."""
