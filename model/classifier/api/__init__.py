"""The HTTP API: the ASGI app, its routes, body inputs, middleware, query parameters and the OpenAPI document.

May import serving, records, store, aws (the uploads bucket), observability, config and errors.
"""
