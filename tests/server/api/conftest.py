from tests.server.registry.fixtures import repo  # noqa: F401 - the session's TUF repository
