"""Applications built on the library (the layer above ``train``, ``pseudo`` and ``evaluation``).

They call library functions only, never ``segunify.cli``; what they need besides code (configs,
templates, stylesheets) ships as package data beside them.
"""
