//! Integration tests of the orders service: the service on port 0 with its own database, and the
//! catalog, cart, payments and shipping faked over HTTP.

mod helpers;
mod orders;
mod saga;
