"""Journey and channel analytics: each partition's partials (``partials``), the totals the
owning partition keeps and emits (``totals``), and alerts (``alerts``)."""
