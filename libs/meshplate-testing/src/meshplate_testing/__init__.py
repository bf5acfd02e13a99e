"""Test support shared by every service's tests (a dev dependency, never shipped in an image).

`servers` finds or starts PostgreSQL and Redis; `proxy` puts a cuttable TCP hop in front of one;
`processes` runs a service as a real child process and reads its JSON log.
"""
