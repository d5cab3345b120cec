"""Real backend servers for tests, started on loopback ports (a pytest plugin)."""
