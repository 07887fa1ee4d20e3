//! What a cart is and how it changes, with no I/O. Both stores apply exactly these rules (the
//! embedded store runs this code; the Redis store runs the same rules in a Lua script, and one
//! conformance suite holds both to them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bounds of one cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Most distinct skus.
    pub max_lines: usize,
    /// Most units of one sku.
    pub max_quantity: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_lines: 50,
            max_quantity: 20,
        }
    }
}

/// A cart: skus and quantities, nothing else (names and prices come from the catalog when the
/// cart is shown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    /// Quantity by sku; never zero.
    pub lines: BTreeMap<String, u32>,
}

/// A change to one cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Adds units of a sku.
    Add {
        /// Which.
        sku: String,
        /// How many more, at least 1.
        quantity: u32,
    },
    /// Sets the units of a sku; 0 removes the line.
    Set {
        /// Which.
        sku: String,
        /// The new quantity.
        quantity: u32,
    },
    /// Removes a sku.
    Remove {
        /// Which.
        sku: String,
    },
}

/// A change that would break a limit. The cart is left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// One line too many.
    #[error("a cart holds at most {0} different products")]
    TooManyLines(usize),
    /// Too many units of one sku.
    #[error("a cart holds at most {0} units of one product")]
    TooManyUnits(u32),
}

impl Cart {
    /// Applies `change` within `limits`.
    pub fn apply(&mut self, change: &Change, limits: Limits) -> Result<(), LimitError> {
        let (sku, quantity) = match change {
            Change::Remove { sku } => {
                self.lines.remove(sku);
                return Ok(());
            }
            Change::Add { sku, quantity } => {
                let current = self.lines.get(sku).copied().unwrap_or(0);
                (sku, current.saturating_add(*quantity))
            }
            Change::Set { sku, quantity } => (sku, *quantity),
        };
        if quantity == 0 {
            self.lines.remove(sku);
            return Ok(());
        }
        if quantity > limits.max_quantity {
            return Err(LimitError::TooManyUnits(limits.max_quantity));
        }
        if !self.lines.contains_key(sku) && self.lines.len() >= limits.max_lines {
            return Err(LimitError::TooManyLines(limits.max_lines));
        }
        self.lines.insert(sku.clone(), quantity);
        Ok(())
    }

    /// Adds `other`'s lines: quantities add, capped at the limit; lines that do not fit are
    /// dropped. Used when an anonymous cart joins a customer's cart at login.
    pub fn merge(&mut self, other: &Cart, limits: Limits) {
        for (sku, quantity) in &other.lines {
            let lines = self.lines.len();
            match self.lines.get_mut(sku) {
                Some(current) => {
                    *current = current.saturating_add(*quantity).min(limits.max_quantity)
                }
                None if lines < limits.max_lines => {
                    self.lines
                        .insert(sku.clone(), (*quantity).min(limits.max_quantity));
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_lines: 2,
        max_quantity: 5,
    };

    fn add(sku: &str, quantity: u32) -> Change {
        Change::Add {
            sku: sku.into(),
            quantity,
        }
    }

    #[test]
    fn adding_sets_and_removing() {
        let mut cart = Cart::default();
        cart.apply(&add("MUG-1", 2), LIMITS).expect("fits");
        cart.apply(&add("MUG-1", 3), LIMITS).expect("fits");
        assert_eq!(cart.lines["MUG-1"], 5);
        assert_eq!(
            cart.apply(&add("MUG-1", 1), LIMITS),
            Err(LimitError::TooManyUnits(5))
        );
        assert_eq!(cart.lines["MUG-1"], 5, "a refused change changes nothing");
        cart.apply(
            &Change::Set {
                sku: "MUG-1".into(),
                quantity: 1,
            },
            LIMITS,
        )
        .expect("fits");
        cart.apply(&add("TEE-1", 1), LIMITS).expect("fits");
        assert_eq!(
            cart.apply(&add("CAP-1", 1), LIMITS),
            Err(LimitError::TooManyLines(2))
        );
        cart.apply(
            &Change::Set {
                sku: "TEE-1".into(),
                quantity: 0,
            },
            LIMITS,
        )
        .expect("removes");
        cart.apply(
            &Change::Remove {
                sku: "MUG-1".into(),
            },
            LIMITS,
        )
        .expect("removes");
        assert!(cart.lines.is_empty());
    }

    #[test]
    fn merging_adds_quantities_and_caps_them() {
        let mut customer = Cart::default();
        customer.apply(&add("MUG-1", 4), LIMITS).expect("fits");
        let mut anonymous = Cart::default();
        anonymous.apply(&add("MUG-1", 3), LIMITS).expect("fits");
        anonymous.apply(&add("TEE-1", 2), LIMITS).expect("fits");
        customer.merge(&anonymous, LIMITS);
        assert_eq!(customer.lines["MUG-1"], 5, "4 + 3, capped at 5");
        assert_eq!(customer.lines["TEE-1"], 2);
        let mut more = Cart::default();
        more.apply(&add("CAP-1", 1), LIMITS).expect("fits");
        customer.merge(&more, LIMITS);
        assert!(
            !customer.lines.contains_key("CAP-1"),
            "no room for a third line"
        );
    }
}
