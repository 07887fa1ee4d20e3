//! End-to-end tests: the real `bazaar` binary, started exactly as a user starts it (`up`
//! re-executes itself for every instance), on free ports and a temporary data directory.

mod browser;
mod checkout;
mod cli;
mod demo;
mod events;
mod hostile;
mod identity;
mod releases;
mod system;
mod tracing;
mod up;
mod web;
