"""The partner page (``/partner``): hash and seal an extract in the browser.

The page itself is built from ``partner-web/`` into ``static/`` by ``make web``. This
domain serves it, its self-contained download with a published sha256, and the partner
kit (the project's spec resolved for an encoder outside Python).
"""
