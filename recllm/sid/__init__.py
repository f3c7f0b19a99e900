"""Semantic IDs: item content encoder, residual quantization with a collision level, prefix trie over SIDs."""
