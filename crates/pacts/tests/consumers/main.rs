//! The consumers' side: each consumer's real code against Pact mock servers (or, for events,
//! the pact's messages fed to its handlers), writing `contracts/pacts/`.

mod events;
mod gateway;
mod orders;

use pact_consumer::prelude::PactBuilder;

/// A V4 pact between `consumer` and `provider`, written to `contracts/pacts/`. Each pair of
/// services has exactly one test, which states every interaction; the old file is removed
/// first (Pact merges into an existing file), so it never keeps an interaction nobody expects
/// any more.
pub(crate) fn pact(consumer: &str, provider: &str) -> PactBuilder {
    let dir = pacts::dir();
    let _ = std::fs::remove_file(dir.join(format!("{consumer}-{provider}.json")));
    let mut builder = PactBuilder::new_v4(consumer, provider);
    builder.with_output_dir(dir);
    builder
}
