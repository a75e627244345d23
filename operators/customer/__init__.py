"""A customer's own state: activity (counters, sessions, traits), lifecycle stage, and what
channels report back (consent, suppression, engagement)."""
