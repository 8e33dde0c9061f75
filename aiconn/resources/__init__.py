"""The Kubernetes resources aiconn serves, one package per API version.

Every custom resource's model (spec and status as pydantic classes), its kind, plural and short
names, and the CRD rendered from them live here and nowhere else; the domain, the operator, the
API and the tools import them from here. This is the bottom layer: it imports no other aiconn
package, so a resource's shape never depends on how it is used.
"""
