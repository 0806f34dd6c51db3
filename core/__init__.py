"""Shared foundation of Tianyuan: configuration, database, auth, money, i18n and web glue."""
