//! The HTTP contract of the appliance: routes, wire types, the one mapping
//! from every crate's errors to HTTP statuses and the spec's error shape
//! (`{"error":{"code","message","details"}}`), and the generated OpenAPI
//! document. It is the only crate that knows HTTP and JSON wire formats.
//!
//! Its work arrives with the server issue (uploads, jobs, status/SSE, the HLS
//! origin); until then this crate deliberately holds no code.
