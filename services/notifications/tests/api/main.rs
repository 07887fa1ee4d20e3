//! Integration tests of the notifications service: the service on port 0 with its own
//! database, consuming the feed of a fake producer whose outbox the test writes.

mod emails;
