"""Jinja2 templates and CSS of the report (package data; nothing executable)."""
