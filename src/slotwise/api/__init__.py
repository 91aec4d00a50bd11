"""The JSON API: app factory, dependencies, routers and the one error handler."""
