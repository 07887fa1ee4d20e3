//! Product pictures, shipped with the project: one small SVG drawing per category, coloured
//! per product (the colour follows from the SKU, so a product always looks the same). Each is
//! well under a kilobyte, and the browser caches it for a day.

/// A drawing, its colours left as `{fill}` and `{ink}`.
fn drawing(category: &str) -> &'static str {
    match category {
        "apparel" => {
            r#"<path d="M70 40l30-14h40l30 14 34 30-22 26-16-12v110H74V84l-16 12-22-26z" fill="{fill}" stroke="{ink}" stroke-width="4" stroke-linejoin="round"/><path d="M100 26c4 16 36 16 40 0" fill="none" stroke="{ink}" stroke-width="4"/>"#
        }
        "kitchen" => {
            r#"<rect x="62" y="60" width="96" height="120" rx="10" fill="{fill}" stroke="{ink}" stroke-width="4"/><path d="M158 84h14a22 22 0 0 1 0 44h-14" fill="none" stroke="{ink}" stroke-width="8"/><path d="M84 40c0-10 12-10 12-20M112 40c0-10 12-10 12-20" fill="none" stroke="{ink}" stroke-width="4" stroke-linecap="round"/>"#
        }
        "books" => {
            r#"<path d="M60 40h100a10 10 0 0 1 10 10v150H70a10 10 0 0 1-10-10z" fill="{fill}" stroke="{ink}" stroke-width="4"/><path d="M60 190a10 10 0 0 1 10-10h100" fill="none" stroke="{ink}" stroke-width="4"/><path d="M86 70h60M86 88h44" stroke="{ink}" stroke-width="4" stroke-linecap="round"/>"#
        }
        "outdoor" => {
            r#"<path d="M30 190L110 50l80 140z" fill="{fill}" stroke="{ink}" stroke-width="4" stroke-linejoin="round"/><path d="M110 50v140M90 190l20-40 20 40" fill="none" stroke="{ink}" stroke-width="4" stroke-linejoin="round"/>"#
        }
        "electronics" => {
            r#"<rect x="30" y="80" width="160" height="80" rx="10" fill="{fill}" stroke="{ink}" stroke-width="4"/><path d="M50 102h12M74 102h12M98 102h12M122 102h12M146 102h12M50 122h12M74 122h12M98 122h12M122 122h12M146 122h12M70 142h80" stroke="{ink}" stroke-width="6" stroke-linecap="round"/>"#
        }
        _ => {
            r#"<rect x="50" y="60" width="120" height="110" rx="8" fill="{fill}" stroke="{ink}" stroke-width="4"/><path d="M50 90h120M110 60v110" stroke="{ink}" stroke-width="4"/>"#
        }
    }
}

/// Soft colours that keep dark ink readable on them.
const FILLS: [&str; 8] = [
    "#f4a261", "#e9c46a", "#8ecae6", "#a8dadc", "#cdb4db", "#b7e4c7", "#ffafcc", "#f6bd60",
];

/// The picture of product `sku` in `category`, as an SVG document with a text alternative.
pub fn product_svg(sku: &str, category: &str, name: &str) -> String {
    // FNV-1a: a stable colour per SKU, the same in every process and release.
    let hash = sku.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let fill = FILLS[usize::try_from(hash % FILLS.len() as u64).unwrap_or(0)];
    let body = drawing(category)
        .replace("{fill}", fill)
        .replace("{ink}", "#1d3557");
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 220 220" role="img" aria-label="{}"><rect width="220" height="220" fill="#f8f9fa"/>{body}</svg>"##,
        escape(name)
    )
}

/// `text` safe inside an XML attribute.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_product_has_a_stable_small_picture_named_for_screen_readers() {
        let svg = product_svg("MUG-STONE", "kitchen", "Stoneware mug <large> & \"blue\"");
        assert_eq!(
            svg,
            product_svg("MUG-STONE", "kitchen", "Stoneware mug <large> & \"blue\"")
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains(r#"aria-label="Stoneware mug &lt;large&gt; &amp; &quot;blue&quot;""#));
        for category in [
            "apparel",
            "kitchen",
            "books",
            "outdoor",
            "electronics",
            "other",
        ] {
            let svg = product_svg("SKU-1", category, "x");
            assert!(svg.len() < 1024, "{category}: {} bytes", svg.len());
            assert!(!svg.contains('{'), "{category}: every colour filled in");
        }
        assert_ne!(
            product_svg("TEE-ORG-S", "apparel", "x"),
            product_svg("TEE-ORG-M", "apparel", "x"),
            "products of a category differ in colour"
        );
    }
}
