//! Integration tests of the recommendations service: the service on port 0 with its own
//! database, following the feed of a fake orders service.

mod recommendations;
