//! Integration tests of the shipping service on port 0 with its own database.

mod shipments;
