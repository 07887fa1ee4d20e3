//! A scenario: how often each journey is taken, as weights in a TOML file.
//!
//! ```toml
//! # bazaar load --scenario shoppers.toml
//! [weights]
//! browse = 40        # the categories, then one category's products
//! view_product = 25  # a product and what is bought with it
//! dashboard = 10     # a signed-in customer's dashboard
//! checkout = 20      # place an order and wait until it is confirmed
//! log_in = 3         # log in again (the gateway allows 300 a minute per address)
//! sign_up = 2        # a new account
//! ```

use rand::RngExt;
use serde::Deserialize;

/// The journeys a virtual customer can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Journey {
    Browse,
    ViewProduct,
    Dashboard,
    Checkout,
    LogIn,
    SignUp,
}

impl Journey {
    /// Every journey, in report order.
    pub(crate) const ALL: [Journey; 6] = [
        Journey::Browse,
        Journey::ViewProduct,
        Journey::Dashboard,
        Journey::Checkout,
        Journey::LogIn,
        Journey::SignUp,
    ];

    /// Its name, as in a scenario file and the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Journey::Browse => "browse",
            Journey::ViewProduct => "view_product",
            Journey::Dashboard => "dashboard",
            Journey::Checkout => "checkout",
            Journey::LogIn => "log_in",
            Journey::SignUp => "sign_up",
        }
    }
}

/// Weights of the journeys; a journey of weight 0 (or left out of a file) is never taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Weights {
    #[serde(default)]
    pub(crate) browse: u32,
    #[serde(default)]
    pub(crate) view_product: u32,
    #[serde(default)]
    pub(crate) dashboard: u32,
    #[serde(default)]
    pub(crate) checkout: u32,
    #[serde(default)]
    pub(crate) log_in: u32,
    #[serde(default)]
    pub(crate) sign_up: u32,
}

impl Default for Weights {
    /// A shop's day: mostly looking, a fifth buying.
    fn default() -> Self {
        Self {
            browse: 40,
            view_product: 25,
            dashboard: 10,
            checkout: 20,
            log_in: 3,
            sign_up: 2,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    weights: Weights,
}

/// A scenario to draw journeys from.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub(crate) weights: Weights,
    total: u32,
}

impl Scenario {
    /// A scenario with `weights`; at least one must be above 0.
    pub(crate) fn new(weights: Weights) -> Result<Self, String> {
        let total = Journey::ALL.iter().map(|j| weights.of(*j)).sum();
        if total == 0 {
            return Err("every journey has weight 0: give at least one a weight".into());
        }
        Ok(Self { weights, total })
    }

    /// Reads a scenario file (`[weights]` in TOML).
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        Self::new(file.weights).map_err(|e| format!("{origin}: {e}"))
    }

    /// Draws a journey by weight.
    pub(crate) fn draw(&self, rng: &mut impl rand::Rng) -> Journey {
        let mut left = rng.random_range(0..self.total);
        for journey in Journey::ALL {
            let weight = self.weights.of(journey);
            if left < weight {
                return journey;
            }
            left -= weight;
        }
        Journey::Browse
    }

    /// Whether any customer will buy.
    pub(crate) fn buys(&self) -> bool {
        self.weights.checkout > 0
    }
}

impl Weights {
    fn of(self, journey: Journey) -> u32 {
        match journey {
            Journey::Browse => self.browse,
            Journey::ViewProduct => self.view_product,
            Journey::Dashboard => self.dashboard,
            Journey::Checkout => self.checkout,
            Journey::LogIn => self.log_in,
            Journey::SignUp => self.sign_up,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn a_file_sets_weights_and_leaves_the_rest_at_zero() {
        let scenario =
            Scenario::parse("[weights]\ncheckout = 1\nbrowse = 3\n", "s.toml").expect("parses");
        let mut rng = StdRng::seed_from_u64(3);
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for _ in 0..4000 {
            *counts.entry(scenario.draw(&mut rng).name()).or_default() += 1;
        }
        assert_eq!(counts.len(), 2, "{counts:?}");
        assert!((2_800..3_200).contains(&counts["browse"]), "{counts:?}");
        assert!(scenario.buys());
    }

    #[test]
    fn bad_files_are_named_with_what_is_wrong() {
        let unknown = Scenario::parse("[weights]\nbrowze = 3\n", "s.toml").expect_err("bad");
        assert!(
            unknown.contains("s.toml") && unknown.contains("browze"),
            "{unknown}"
        );
        let zero = Scenario::parse("[weights]\nbrowse = 0\n", "s.toml").expect_err("bad");
        assert!(zero.contains("weight 0"), "{zero}");
        let negative = Scenario::parse("[weights]\nbrowse = -1\n", "s.toml").expect_err("bad");
        assert!(negative.contains("s.toml"), "{negative}");
        let empty = Scenario::parse("", "s.toml").expect_err("bad");
        assert!(empty.contains("weights"), "{empty}");
    }

    #[test]
    fn the_default_mix_buys() {
        let scenario = Scenario::new(Weights::default()).expect("valid");
        assert!(scenario.buys());
    }
}
