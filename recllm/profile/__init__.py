"""The unified user profile across samokat, megamarket and kuper.

Events and their schema (``events``, ``event_schema``), the storage protocol (``storage``) with its SQLite
(``sqlite_store``) and PostgreSQL (``postgres_store``, ``postgres_derived``) backends, what is derived from the event
log (``user_signals``, ``fragments``, ``history``), its rebuild (``refresh``), retention and forgetting
(``retention``) and the differentially private release of the preference vectors (``differential_privacy``).
"""
