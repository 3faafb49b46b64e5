"""The fleet dashboard: server-rendered pages under `/ui` over the same handlers the JSON API uses."""
