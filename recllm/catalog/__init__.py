"""The product catalog of the three services: categories, items, stock and prices, addressed by global item id."""
