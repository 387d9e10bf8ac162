//! PostgreSQL: the wire codec ([`codec`]), the SCRAM-SHA-256 client used to
//! log in upstream ([`scram`]) and SQL statement classification ([`sql`]).
//!
//! Host-free: the network filter (wired separately) feeds bytes in and gets
//! messages, classifications and rewritten bytes back.

pub mod cache;
pub mod codec;
pub mod scram;
pub mod session;
pub mod sql;
pub mod stream;

#[cfg(test)]
mod codec_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod sql_tests;
