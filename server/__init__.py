"""TinySphere: the server that keeps a fleet of TinyMLOps devices, their data and their models."""
