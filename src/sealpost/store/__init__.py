"""Persistence: tables, repositories, migrations and the content blob store."""
