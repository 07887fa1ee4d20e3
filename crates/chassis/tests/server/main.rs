//! Integration tests of the chassis: a real server on port 0 with the chassis middleware, and
//! the internal client calling real (and fake) neighbours.

mod client;
mod dns;
mod faults;
mod front;
mod inproc;
mod lifecycle;
mod linger;
mod mtls;
mod tls;
