//! The shape of every list on the public API: `{"items": [...], "next_cursor": "..."}`.

use serde::{Deserialize, Serialize};

/// One page of a list. `next_cursor` is opaque; pass it back as `?cursor=` for the next page.
/// It is `null` on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A list that fits on one page.
    pub fn complete(items: Vec<T>) -> Self {
        Self {
            items,
            next_cursor: None,
        }
    }
}
