"""Auditors' tools: rebuild as of a date, explain, verify, check what was issued."""
