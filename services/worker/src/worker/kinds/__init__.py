"""The worker's job kinds, one module each."""
