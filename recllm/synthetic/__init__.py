"""The seeded synthetic ecosystem: catalogs of the three services, users acting across them, histories and queries.

``ecosystem`` builds the small "test"/"default" worlds in memory; ``scale`` streams millions of users to a store.
"""
