"""The access kit every page a person opens uses: single-use links, page sessions without
cookies, one-time codes by channel (email now, SMS later), counted attempts and lockouts,
keyed by (tenant, subject type, subject id, party id).  See ``service.py``."""
