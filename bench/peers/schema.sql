-- The peers' table (one database per peer): inventory-sink's products columns where they
-- overlap (id, name, description, price, quantity, version, with the same types and checks);
-- occurred_at stands in for updated_at. The peers cannot soft-delete, so there is no deleted_at.
DROP TABLE IF EXISTS products;
CREATE TABLE products (
    id          bigint PRIMARY KEY,
    name        varchar(255)   NOT NULL,
    description text,
    price       numeric(12, 2) NOT NULL CHECK (price >= 0),
    quantity    integer        NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    version     bigint         NOT NULL,
    occurred_at timestamptz    NOT NULL
);
