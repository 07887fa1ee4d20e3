//! The RFC 9457 problem details body that every Bazaar error response carries.
//!
//! `type` is a stable URN (`urn:bazaar:problem:<slug>`): clients branch on it, never on `title`
//! or `detail`, which are for people. The list of slugs is in `docs/problems.md`.

use serde::{Deserialize, Serialize};

/// Prefix of every problem `type` Bazaar emits.
pub const TYPE_PREFIX: &str = "urn:bazaar:problem:";

/// An `application/problem+json` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, `urn:bazaar:problem:<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem; the same for every occurrence of a `type`.
    pub title: String,
    /// The HTTP status code, repeated for clients that lose the status line.
    pub status: u16,
    /// What went wrong this time, for a person to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path the problem occurred on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Correlation id of the request, to find its log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The request's trace (`bazaar trace <id>` draws it), when it is part of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Per-field validation errors, when the request body or query was invalid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Name of the field as it appears on the wire (`email`, `items[2].quantity`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl Problem {
    /// The slug of this problem's `type`, if it is one of Bazaar's.
    pub fn slug(&self) -> Option<&str> {
        self.kind.strip_prefix(TYPE_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_type_and_omits_empty_members() {
        let problem = Problem {
            kind: format!("{TYPE_PREFIX}not-found"),
            title: "Not found".into(),
            status: 404,
            detail: None,
            instance: Some("/users/me".into()),
            request_id: None,
            trace_id: None,
            errors: vec![],
        };
        let json = serde_json::to_value(&problem).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "type": "urn:bazaar:problem:not-found",
                "title": "Not found",
                "status": 404,
                "instance": "/users/me"
            })
        );
        assert_eq!(problem.slug(), Some("not-found"));
    }
}
