"""Test support shared by every service's tests (a dev dependency, never shipped in an image).

`servers` finds or starts PostgreSQL and Redis; `redis_cluster` starts a Redis Cluster (three
masters, a replica each) whose masters can be killed; `pgbouncer` a PgBouncer in transaction
pooling mode; `proxy` puts a cuttable TCP hop in front of a server; `netns` makes hosts of their
own (network namespaces) whose links can be cut; `processes` runs a service as a real child
process and reads its JSON log.
"""
