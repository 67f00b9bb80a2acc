"""Alembic environment: runs migrations on the async engine given in the config."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.db.models import Base

config = context.config


def _run(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from engine.db.session import make_engine

    url = config.get_main_option("sqlalchemy.url")
    if url is None:  # engine.db.migrate always sets it; a bare `alembic` run must too
        raise RuntimeError("sqlalchemy.url is not set in the Alembic config")
    engine = make_engine(url)
    asyncio.run(_run_async(engine))


run_migrations_online()
