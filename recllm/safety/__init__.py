"""Safety: privacy filter, moderation and the sensitive-domain rule that guard every answer Rec-LLM gives."""
