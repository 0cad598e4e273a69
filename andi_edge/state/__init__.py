"""Durable state: the SQLite journal of every photo the daemon has seen."""
