"""Test doubles that run as real network servers, never imported by production code.

The OCRFlux-3B stand-in: `ocrflux_server.py` (the vLLM-shaped HTTP server; truth.py, gpu.py,
faults.py, validation.py and control_api.py are its parts), `control.py` (its control client)
and `fixtures.py` (pytest fixtures that start it in a thread or as a process).
"""
