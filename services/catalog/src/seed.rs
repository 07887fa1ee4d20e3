//! The demo catalog `bazaar up` loads on first start: 50 products in 5 categories, with stock.
//! Loaded only into an empty catalog, so an administrator's changes survive restarts.

use chassis::db::now_millis;

use crate::store::{ProductRecord, Store, StoreError};

/// `(slug, name, description)` of each category, in display order.
pub const CATEGORIES: [(&str, &str, &str); 5] = [
    (
        "apparel",
        "Apparel",
        "Shirts, hoodies and caps in organic cotton.",
    ),
    (
        "kitchen",
        "Kitchen",
        "Mugs, pans and tools for people who cook.",
    ),
    ("books", "Books", "Engineering classics and field guides."),
    (
        "outdoor",
        "Outdoor",
        "Gear for a weekend away from screens.",
    ),
    (
        "electronics",
        "Electronics",
        "Keyboards, cables and gadgets for the desk.",
    ),
];

/// `(sku, name, category, price in cents, stock, description)`.
pub const PRODUCTS: [(&str, &str, &str, i64, i64, &str); 50] = [
    (
        "TEE-ORG-S",
        "Organic Tee, small",
        "apparel",
        2400,
        40,
        "Heavyweight organic cotton, relaxed fit.",
    ),
    (
        "TEE-ORG-M",
        "Organic Tee, medium",
        "apparel",
        2400,
        60,
        "Heavyweight organic cotton, relaxed fit.",
    ),
    (
        "TEE-ORG-L",
        "Organic Tee, large",
        "apparel",
        2400,
        50,
        "Heavyweight organic cotton, relaxed fit.",
    ),
    (
        "HOODIE-GRY-M",
        "Grey Hoodie, medium",
        "apparel",
        5900,
        25,
        "Brushed fleece inside, kangaroo pocket.",
    ),
    (
        "HOODIE-GRY-L",
        "Grey Hoodie, large",
        "apparel",
        5900,
        20,
        "Brushed fleece inside, kangaroo pocket.",
    ),
    (
        "CAP-NAVY",
        "Navy Cap",
        "apparel",
        1900,
        35,
        "Six panels, adjustable strap.",
    ),
    (
        "SOCKS-WOOL",
        "Merino Socks",
        "apparel",
        1600,
        80,
        "Merino wool blend, reinforced heel.",
    ),
    (
        "BEANIE-RED",
        "Red Beanie",
        "apparel",
        2200,
        30,
        "Ribbed knit, one size.",
    ),
    (
        "RAIN-JACKET-M",
        "Rain Jacket, medium",
        "apparel",
        11900,
        12,
        "Taped seams, packs into its pocket.",
    ),
    (
        "APRON-CANVAS",
        "Canvas Apron",
        "apparel",
        3400,
        18,
        "Waxed canvas with leather straps.",
    ),
    (
        "MUG-STONE",
        "Stoneware Mug",
        "kitchen",
        1800,
        100,
        "Hand-glazed, 350 ml, dishwasher safe.",
    ),
    (
        "MUG-ENAMEL",
        "Enamel Camp Mug",
        "kitchen",
        1500,
        70,
        "Steel with enamel, light and tough.",
    ),
    (
        "PAN-CAST-26",
        "Cast Iron Pan 26 cm",
        "kitchen",
        4900,
        15,
        "Pre-seasoned, lasts a lifetime.",
    ),
    (
        "KNIFE-CHEF-20",
        "Chef's Knife 20 cm",
        "kitchen",
        8900,
        10,
        "Carbon steel, walnut handle.",
    ),
    (
        "BOARD-OAK",
        "Oak Cutting Board",
        "kitchen",
        4200,
        22,
        "End-grain oak, 40 by 25 cm.",
    ),
    (
        "KETTLE-GOOSE",
        "Gooseneck Kettle",
        "kitchen",
        6500,
        14,
        "Precise pour for filter coffee.",
    ),
    (
        "GRINDER-HAND",
        "Hand Coffee Grinder",
        "kitchen",
        7900,
        9,
        "Conical steel burrs, 40 settings.",
    ),
    (
        "TEAPOT-CAST",
        "Cast Iron Teapot",
        "kitchen",
        5400,
        11,
        "Enamelled inside, steel infuser.",
    ),
    (
        "SPATULA-FISH",
        "Fish Spatula",
        "kitchen",
        1400,
        45,
        "Thin, flexible, slotted.",
    ),
    (
        "JAR-SET-3",
        "Glass Jar Set",
        "kitchen",
        2600,
        30,
        "Three airtight jars with bamboo lids.",
    ),
    (
        "BOOK-DDIA",
        "Designing Data-Intensive Applications",
        "books",
        4500,
        25,
        "Reliable, scalable, maintainable systems.",
    ),
    (
        "BOOK-SRE",
        "Site Reliability Engineering",
        "books",
        3900,
        20,
        "How Google runs production systems.",
    ),
    (
        "BOOK-MICRO",
        "Building Microservices",
        "books",
        4200,
        18,
        "Designing fine-grained systems.",
    ),
    (
        "BOOK-RUST",
        "The Rust Programming Language",
        "books",
        3900,
        30,
        "The book, on paper.",
    ),
    (
        "BOOK-ZERO2PROD",
        "Zero to Production in Rust",
        "books",
        4900,
        15,
        "Backend development in Rust, end to end.",
    ),
    (
        "BOOK-PATTERNS",
        "Microservices Patterns",
        "books",
        4400,
        16,
        "Sagas, outboxes, and their friends.",
    ),
    (
        "BOOK-RELEASE",
        "Release It!",
        "books",
        3700,
        14,
        "Design and deploy production-ready software.",
    ),
    (
        "BOOK-DDD",
        "Domain-Driven Design",
        "books",
        5200,
        12,
        "Tackling complexity in the heart of software.",
    ),
    (
        "BOOK-BIRDS",
        "Field Guide to Birds",
        "books",
        2900,
        10,
        "Every common species, illustrated.",
    ),
    (
        "BOOK-KNOTS",
        "Pocket Book of Knots",
        "books",
        1200,
        40,
        "Sixty knots, step by step.",
    ),
    (
        "TENT-2P",
        "Two-Person Tent",
        "outdoor",
        24900,
        6,
        "Freestanding, 1.9 kg, three seasons.",
    ),
    (
        "BAG-SLEEP-5C",
        "Sleeping Bag 5 °C",
        "outdoor",
        13900,
        8,
        "Synthetic fill, compresses small.",
    ),
    (
        "PAD-SLEEP",
        "Sleeping Pad",
        "outdoor",
        7900,
        12,
        "Self-inflating, R-value 3.5.",
    ),
    (
        "STOVE-CAN",
        "Canister Stove",
        "outdoor",
        4500,
        20,
        "Boils a litre in three minutes.",
    ),
    (
        "LAMP-HEAD",
        "Head Lamp",
        "outdoor",
        3500,
        30,
        "400 lumens, rechargeable.",
    ),
    (
        "BOTTLE-STEEL",
        "Steel Bottle 750 ml",
        "outdoor",
        2900,
        50,
        "Insulated, keeps cold for a day.",
    ),
    (
        "PACK-30L",
        "Day Pack 30 l",
        "outdoor",
        8900,
        15,
        "Ventilated back, rain cover included.",
    ),
    (
        "POLES-TREK",
        "Trekking Poles",
        "outdoor",
        6900,
        10,
        "Carbon, folding, cork grips.",
    ),
    (
        "COMPASS-BASE",
        "Baseplate Compass",
        "outdoor",
        2400,
        25,
        "Declination adjustment, mirror.",
    ),
    (
        "FIRST-AID",
        "First Aid Kit",
        "outdoor",
        3200,
        35,
        "For two people, two days.",
    ),
    (
        "KB-MECH-TKL",
        "Mechanical Keyboard TKL",
        "electronics",
        12900,
        10,
        "Hot-swap switches, PBT keycaps.",
    ),
    (
        "MOUSE-ERGO",
        "Ergonomic Mouse",
        "electronics",
        6900,
        20,
        "Vertical grip, silent clicks.",
    ),
    (
        "CABLE-USBC-2M",
        "USB-C Cable 2 m",
        "electronics",
        1500,
        120,
        "100 W, braided.",
    ),
    (
        "HUB-USBC-7",
        "USB-C Hub, 7 ports",
        "electronics",
        4900,
        25,
        "HDMI 4K, card reader, 100 W pass-through.",
    ),
    (
        "STAND-LAPTOP",
        "Laptop Stand",
        "electronics",
        3900,
        30,
        "Aluminium, six heights.",
    ),
    (
        "HEADPHONES-ANC",
        "Noise-Cancelling Headphones",
        "electronics",
        19900,
        8,
        "Thirty hours, folds flat.",
    ),
    (
        "LAMP-DESK-LED",
        "LED Desk Lamp",
        "electronics",
        5900,
        15,
        "Dimmable, warm to cool light.",
    ),
    (
        "CHARGER-65W",
        "65 W Charger",
        "electronics",
        3900,
        40,
        "GaN, two USB-C ports.",
    ),
    (
        "SSD-EXT-1TB",
        "External SSD 1 TB",
        "electronics",
        10900,
        12,
        "USB 3.2, 1000 MB/s.",
    ),
    (
        "WEBCAM-1080",
        "Webcam 1080p",
        "electronics",
        5400,
        18,
        "Autofocus, privacy shutter.",
    ),
];

/// Loads the categories, and the products if the catalog has none. Safe on every start and from
/// several replicas at once.
pub async fn seed(store: &Store) -> Result<usize, StoreError> {
    for (position, (slug, name, description)) in (0_i64..).zip(CATEGORIES) {
        store
            .ensure_category(slug, name, description, position)
            .await?;
    }
    if store.product_count().await? > 0 {
        return Ok(0);
    }
    let mut loaded = 0;
    for (i, (sku, name, category, price_minor, stock, description)) in (0_i64..).zip(PRODUCTS) {
        // Creation times one second apart keep "newest" deterministic.
        let created_at = now_millis() - (PRODUCTS.len() as i64 - i) * 1000;
        let product = ProductRecord {
            id: uuid::Uuid::now_v7().to_string(),
            sku: sku.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            price_minor,
            currency: "USD".to_owned(),
            category: category.to_owned(),
            image_url: None,
            active: true,
            on_hand: stock,
            reserved: 0,
            sold: 0,
            created_at,
            updated_at: created_at,
        };
        match store.insert(&product).await {
            Ok(()) => loaded += 1,
            // Another replica is seeding at the same time.
            Err(StoreError::SkuTaken) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Sku, check_name, check_slug};

    #[test]
    fn the_seed_catalog_is_valid() {
        let mut skus = std::collections::BTreeSet::new();
        for (sku, name, category, price, stock, _) in PRODUCTS {
            assert_eq!(
                Sku::parse(sku).map(|s| s.as_str().to_owned()),
                Ok(sku.to_owned())
            );
            assert!(skus.insert(sku), "{sku} twice");
            assert!(check_name(name).is_ok(), "{name}");
            assert!(
                CATEGORIES.iter().any(|(slug, _, _)| *slug == category),
                "{category}"
            );
            assert!(price > 0 && stock > 0);
        }
        assert!(
            CATEGORIES
                .iter()
                .all(|(slug, _, _)| check_slug(slug).is_ok())
        );
    }
}
