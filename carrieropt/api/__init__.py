"""Shared pieces of the REST API: tenant scoping, base views, error documentation."""
