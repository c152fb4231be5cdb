"""Campaigns: broadcasts to a list, opt-outs, messaging limits and cost."""
