//! Default ports (DESIGN.md, "Processes"): a base of 7700 plus a fixed offset per process.
//!
//! Never one of the ports the machine's own databases and brokers use; [`is_reserved`] lists
//! them so `bazaar up` can refuse a base port that would collide.

/// The default base port.
pub const BASE: u16 = 7700;
/// Gateway, HTTP.
pub const GATEWAY: u16 = BASE;
/// Registry.
pub const REGISTRY: u16 = BASE + 1;
/// Users.
pub const USERS: u16 = BASE + 11;

/// Offset of a process's port from the base, by service name.
pub fn offset(service: &str) -> Option<u16> {
    Some(match service {
        "gateway" => 0,
        "registry" => 1,
        "telemetry" => 2,
        "users" => 11,
        "catalog" => 12,
        "orders" => 13,
        "payments" => 14,
        "shipping" => 15,
        "notifications" => 16,
        "recommendations" => 17,
        "cart" => 18,
        "web" => 19,
        "gateway-tls" => 43,
        _ => return None,
    })
}

/// Ports that belong to the machine's own servers (PostgreSQL, Redis, NATS, ...).
pub const RESERVED: [u16; 8] = [1883, 3306, 4222, 5432, 5672, 6379, 8222, 15672];

/// Whether `port` belongs to one of the machine's own servers.
pub fn is_reserved(port: u16) -> bool {
    RESERVED.contains(&port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        assert_eq!(offset("users").map(|o| BASE + o), Some(7711));
        assert_eq!(offset("gateway-tls").map(|o| BASE + o), Some(7743));
        assert_eq!(offset("nope"), None);
        assert!(is_reserved(5432));
        assert!(!is_reserved(USERS));
    }
}
