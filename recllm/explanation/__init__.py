"""Explanations: why each recommended item, tied to the facts of the user's own profile that support it."""
