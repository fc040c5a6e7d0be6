"""Scenario files: a small retail network and a timeline, played against the real services."""
