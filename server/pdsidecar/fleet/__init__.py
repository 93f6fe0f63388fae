"""The fleet's shared tier on Redis: sealed values, locks and events (see store.py)."""
