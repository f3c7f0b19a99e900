"""Labeled user messages for request understanding, and the script that writes them."""
