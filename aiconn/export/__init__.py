"""Exports for systems beside aiconn: usage and settlements as CloudEvents for billing systems,
SLOs as OpenSLO and Sloth specs for SLO tooling. Each reads the domain (`aiconn.sla`) and never
writes it."""
