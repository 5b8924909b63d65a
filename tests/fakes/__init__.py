"""Test doubles that run as real network servers (the OCRFlux-3B stand-in), never imported by production code."""
