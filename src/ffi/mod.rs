//! The C interface (stub).
