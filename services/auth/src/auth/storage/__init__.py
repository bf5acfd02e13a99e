"""The auth service's storage: the only package that speaks SQL."""
