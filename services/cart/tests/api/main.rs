//! Integration tests of the cart service.

mod cart;
mod store;
