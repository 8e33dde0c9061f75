"""Contracts between processes that are built and deployed apart: what one writes and another
reads (environment, paths, ports, hashes). Each is written once here and imported by both sides,
so they cannot drift. Nothing here imports the rest of aiconn."""
