"""aiconn: SLA-driven AI connectivity for telecom operators.

The package carries the design card's rooms as subpackages (`operator`, `slices`, `sla`,
`inference`, `gateway`, `api`, `devstack`) because `operator` clashes with the standard library
and the others are too generic to install at top level.
"""

__version__ = "0.1.0"
