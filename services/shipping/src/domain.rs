//! Shipment states and carriers, with no I/O.

/// Label printed, parcel not yet with the carrier: the only state a shipment can be cancelled in.
pub const LABEL_CREATED: &str = "label_created";
/// With the carrier.
pub const IN_TRANSIT: &str = "in_transit";
/// Arrived.
pub const DELIVERED: &str = "delivered";
/// Called off before it shipped.
pub const CANCELLED: &str = "cancelled";

/// The state after `status` on the way to delivery, if there is one.
pub fn next(status: &str) -> Option<&'static str> {
    match status {
        LABEL_CREATED => Some(IN_TRANSIT),
        IN_TRANSIT => Some(DELIVERED),
        _ => None,
    }
}

/// The carrier for a destination country (ISO 3166-1 alpha-2).
pub fn carrier(country: &str) -> (&'static str, &'static str) {
    match country {
        "GB" => ("Royal Mail", "RM"),
        "US" | "CA" => ("UPS", "1Z"),
        _ => ("DHL", "JD"),
    }
}

/// A tracking number in the carrier's style: its prefix and 12 digits from `seed`.
pub fn tracking_number(prefix: &str, seed: u128) -> String {
    format!("{prefix}{:012}", seed % 1_000_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipments_move_one_way_to_delivery() {
        assert_eq!(next(LABEL_CREATED), Some(IN_TRANSIT));
        assert_eq!(next(IN_TRANSIT), Some(DELIVERED));
        assert_eq!(next(DELIVERED), None);
        assert_eq!(next(CANCELLED), None);
    }

    #[test]
    fn carriers_and_tracking_numbers() {
        assert_eq!(carrier("GB").0, "Royal Mail");
        assert_eq!(carrier("FR").0, "DHL");
        assert_eq!(tracking_number("RM", 42), "RM000000000042");
        assert_eq!(tracking_number("RM", u128::MAX).len(), 14);
    }
}
