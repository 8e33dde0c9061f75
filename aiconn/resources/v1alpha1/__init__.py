"""aiconn.io/v1alpha1: the resource models (one module per kind), their names (`kinds.py`), the
shared pieces (`meta.py`) and the CRDs rendered from them (`crds.py`)."""
