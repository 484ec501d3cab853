"""riskserve: what training and serving share (contract, encoding, store, auth, metrics, drift)."""
