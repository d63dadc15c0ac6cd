"""The one SQLAlchemy ``MetaData`` every domain's ``tables.py`` defines its tables on.

Names follow the domain: a tenant, an API key, an evidence record, a tree head.  Binary hashes
are stored as raw bytes; ids are UUID strings so they read the same in every database.
Foreign keys name their table as a string (``"tenants.id"``): they resolve once every domain's
tables are collected (``sealpost.schema``).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, MetaData

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

BigInt = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only
