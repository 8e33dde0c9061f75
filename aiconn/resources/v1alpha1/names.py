"""How Kubernetes spells names, for fields that hold one or must be usable as one.

A tenant, tier or model class spelled as an RFC 1123 label can become a label value or part of an
object name without a second check; a field naming an object (an offer) takes what the object's
name may be. One copy each, so a CRD field and the next one written cannot drift apart, and the
HTTP API's path parameters check names by the same text as the CRDs.
"""

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""An RFC 1123 label, as a namespace is spelled (63 characters at most): apimachinery's
`IsDNS1123Label`."""

DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$"
"""Lower-case alphanumerics, `-` and `.`, as most objects are named (253 characters at most); a
little looser than apimachinery's `IsDNS1123Subdomain`, which also refuses empty labels (`a..b`).
The CRDs' schemas carry it, so making it strict would refuse specs the cluster accepts today."""

STRICT_DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""apimachinery's `IsDNS1123Subdomain` exactly (dot-separated RFC 1123 labels, 253 characters at
most): what the Kubernetes API server accepts as an object's name, so the HTTP API answers 422 for
a name no object can have instead of looking it up."""
