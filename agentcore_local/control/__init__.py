"""The control plane: runtimes, endpoints, configuration rules, idempotency (RuntimeRegistry)."""
