//! Integration tests of the cart service.

mod store;
