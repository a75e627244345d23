"""RocksDB-backed state: one store per input partition, written in one batch per micro-batch."""
