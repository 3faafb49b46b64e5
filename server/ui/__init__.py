"""The fleet dashboard: server-rendered pages under `/ui` over the same use-case functions the JSON API calls."""
