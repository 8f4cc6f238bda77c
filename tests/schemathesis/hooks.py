"""Schemathesis hooks for tests/tests/contract.rs (loaded through
SCHEMATHESIS_HOOKS): media types the box takes that Schemathesis has no
serializer for."""

import schemathesis

# tus 1.0 sends upload bytes as `application/offset+octet-stream`: raw
# bytes, serialized as `application/octet-stream` is.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
