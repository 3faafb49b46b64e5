"""The signed model registry: a TUF repository (python-tuf metadata) whose targets are model bundles.

Root and targets keys stay offline with the operator; the server signs snapshot and timestamp.
"""
