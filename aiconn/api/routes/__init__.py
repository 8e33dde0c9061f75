"""The API's routers, one module per audience: tenants, the NOC, probes, and the NOC page."""
