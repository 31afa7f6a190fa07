"""The API's routes, one module per concern; each module's ``router(settings)`` builds its routes.

These modules do not use ``from __future__ import annotations``: FastAPI reads the route functions'
annotations at run time, and some name request models built inside ``router`` (their limits are settings).
"""
