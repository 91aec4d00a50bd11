"""One function per use case. Services flush but never commit: the edge (a request, a CLI command,
one item of the billing sweep) owns the transaction."""
