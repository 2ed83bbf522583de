"""One module per CLI verb: `register(subparsers)` adds its options, `run(args)` does the work.

Command modules import only what argument parsing needs; heavy libraries (the Kubernetes
client, gitpython, etcd) are imported inside `run`, so `meshc validate` starts fast.
"""
