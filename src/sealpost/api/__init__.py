"""The REST API (FastAPI): ``create_app`` builds it around a :class:`sealpost.app.Sealpost`."""
