"""Dialogue: understanding one user message (intent, domain, slots), the chat session and the chat engine."""
