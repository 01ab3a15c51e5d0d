//! Integration tests of the broker against real partition logs in temporary directories.

mod background;
mod common;
mod errors;
mod faults;
mod fetch_many;
mod groups;
mod idempotence;
mod produce_fetch;
mod topics;
