"""Data models: input events, output records, customer profile (and, later, journeys, NBA)."""
