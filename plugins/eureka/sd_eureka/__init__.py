"""Eureka backend for sd-core (not implemented yet: this distribution registers no backend)."""
