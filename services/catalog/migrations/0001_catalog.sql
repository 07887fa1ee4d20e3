-- Categories and products. A deactivated product keeps its row (orders refer to its sku) but
-- leaves the public listing.
CREATE TABLE categories (
    slug        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    position    BIGINT NOT NULL
);

CREATE TABLE products (
    id             TEXT PRIMARY KEY,
    sku            TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    name_lower     TEXT NOT NULL,
    description    TEXT NOT NULL,
    price_minor    BIGINT NOT NULL CHECK (price_minor >= 0),
    currency       TEXT NOT NULL,
    category       TEXT NOT NULL REFERENCES categories (slug),
    image_url      TEXT,
    deactivated_at BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE INDEX products_category ON products (category);
CREATE INDEX products_price ON products (price_minor, id);
CREATE INDEX products_name ON products (name_lower, id);
CREATE INDEX products_created ON products (created_at, id);

-- Stock per sku. Available = on_hand - reserved, which the checks keep from going negative;
-- sold counts units that left through committed reservations.
CREATE TABLE inventory (
    sku      TEXT PRIMARY KEY REFERENCES products (sku),
    on_hand  BIGINT NOT NULL CHECK (on_hand >= 0),
    reserved BIGINT NOT NULL CHECK (reserved >= 0),
    sold     BIGINT NOT NULL CHECK (sold >= 0),
    CHECK (reserved <= on_hand)
);

-- Reservations hold stock for an order until committed (sold), released, or expired.
CREATE TABLE reservations (
    id              TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_hash    TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE INDEX reservations_expiry ON reservations (status, expires_at);

CREATE TABLE reservation_lines (
    reservation_id TEXT NOT NULL REFERENCES reservations (id),
    sku            TEXT NOT NULL,
    quantity       BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, sku)
);
