"""Structured JSON logs and CloudWatch EMF metrics (Powertools).

May import config and errors only.
"""
