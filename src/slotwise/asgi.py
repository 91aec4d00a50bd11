"""The ASGI application for servers: ``uvicorn slotwise.asgi:app``."""

from slotwise.api.app import create_app

app = create_app()
