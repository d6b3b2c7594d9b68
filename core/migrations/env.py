"""Alembic environment: the URL comes from the caller (core.pg.migrate) or alembic.ini.
Daily partitions of scored_event are made by upkeep, not by revisions: autogenerate ignores them."""

import re

from alembic import context
from sqlalchemy import engine_from_config, pool

from core.db import Base

config = context.config
target_metadata = Base.metadata
PARTITION = re.compile(r"^scored_event_(\d{8}|default)$")


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "table" and PARTITION.match(name or ""))


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
