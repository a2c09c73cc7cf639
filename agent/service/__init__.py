"""The service's edge: the settings read once from the environment, /ping health, the warm-up,
and the request guard in front of the SDK."""
