"""Containers: Docker-style options, OCI spec generation, lifecycle, shim client, logs."""
