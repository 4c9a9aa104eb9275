"""Venue facts about Kraken that every face needs: request signing (spot API-Sign, futures Authent,
FIX logon password 554), nonces, symbol forms and the CRC32 book checksum.

May import: the standard library only. Everything else may import this.
"""
