"""Auditors' tools: rebuild as of a date, explain, verify, compare (later issues)."""
