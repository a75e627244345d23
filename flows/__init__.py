"""bytewax dataflow definitions and their wiring: sources, sinks, the runner."""
