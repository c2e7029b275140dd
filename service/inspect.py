"""Print the products table (used by the README's demo)."""

from __future__ import annotations

from sqlalchemy import text

from service.config import Settings
from service.db import make_engine


async def print_products(settings: Settings, include_deleted: bool = True) -> None:
    engine = make_engine(settings)
    try:
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    text(
                        "SELECT id, name, price, quantity, version, deleted_at IS NOT NULL "
                        "FROM products ORDER BY id"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    header = f"{'id':>4}  {'name':<24} {'price':>10} {'quantity':>9} {'version':>8}  deleted"
    print(header)
    print("-" * len(header))
    for pid, name, price, quantity, version, deleted in rows:
        if deleted and not include_deleted:
            continue
        print(
            f"{pid:>4}  {name[:24]:<24} {price:>10} {quantity:>9} {version:>8}  "
            f"{'yes' if deleted else ''}"
        )
    print(f"({len(rows)} rows)")
