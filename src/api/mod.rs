//! What SQL sees of the Rust side: the functions SQL calls directly, every `pg_callback.*`
//! setting, and the one error type with its SQLSTATEs.
//!
//! In: SQL calls and postgresql.conf. Out: checked settings, errors raised with a SQLSTATE.
//! The schema itself is in sql/*.sql, in the order src/lib.rs lists.

pub mod error;
pub mod functions;
pub mod services;
pub mod settings;
