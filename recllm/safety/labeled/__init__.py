"""Labeled sets for the safety filters (pii.jsonl, moderation.jsonl) and the script that writes them."""
