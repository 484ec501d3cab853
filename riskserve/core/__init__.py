"""The core: the model contract, validation, encoding, framework adapters, scoring, the model
store, the routing registry and batching. No HTTP, gRPC or Prometheus in here."""
