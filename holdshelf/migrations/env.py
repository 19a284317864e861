"""Alembic environment. Holdshelf passes its engine in; the `alembic` command line (run from the
repository, see alembic.ini) uses the instance named by HOLDSHELF_INSTANCE (default ./instance)."""

from __future__ import annotations

from alembic import context

from holdshelf.storage.models import Base

config = context.config


def _engine():
    engine = config.attributes.get("engine")
    if engine is None:
        from holdshelf.config_sources import default_instance_dir
        from holdshelf.settings import load_settings
        from holdshelf.storage.database import make_engine

        engine = make_engine(load_settings(default_instance_dir()).database_url)
    return engine


def run_migrations_online() -> None:
    with _engine().connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
