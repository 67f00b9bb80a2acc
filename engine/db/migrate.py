"""`consentry db init`: run the Alembic migrations to head (idempotent)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


async def upgrade(engine: AsyncEngine) -> str:
    """Bring the schema to head; returns the revision now in force."""
    config = alembic_config(str(engine.url))

    def _upgrade(connection) -> str:  # noqa: ANN001
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision() or ""

    async with engine.begin() as connection:
        return await connection.run_sync(_upgrade)
