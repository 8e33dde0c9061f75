"""The SLA domain's I/O edges: the ledger database (schema, migrations, the ledger store) and the
Prometheus reader. The domain (`aiconn.sla`) never imports them; adapters pass them in."""
