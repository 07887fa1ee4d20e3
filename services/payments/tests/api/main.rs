//! Integration tests of the payments service on port 0 with its own database.

mod charges;
