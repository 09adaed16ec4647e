"""Where a sweep's jobs run, each executor a module behind one interface (base.Executor), found by name in
registry: local.py (in this process), processes.py (a pool on this machine), dask.py (a Dask cluster)."""
