"""The steps of the flow, callable (and tested) without bytewax or Kafka."""
