//! The cart service: shopping carts on a key-value store.
//!
//! # Layout
//! - [`domain`]: what a cart is and how it changes (no I/O).
//! - [`store`]: the store trait, with an embedded (redb) and a Redis implementation.

#![forbid(unsafe_code)]

pub mod domain;
pub mod store;
