"""Support shared by every component config dataclass: field checks whose messages name class, field and value."""
