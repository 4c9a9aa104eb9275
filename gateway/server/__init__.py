"""Assembles one gateway process from a config: sessions, router, services, shutdown.

May import: everything below cli.
"""
