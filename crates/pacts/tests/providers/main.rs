//! The providers' side: each provider, started for real on port 0 with a temporary database,
//! verified against every pact in `contracts/pacts/` that names it.

mod broken;
mod catalog;
mod orders;
mod payments;
mod recommendations;
mod shipping;
mod support;
mod users;
