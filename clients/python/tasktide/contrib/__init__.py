"""Integrations of tasktide with other frameworks. Each lives in its own subpackage and imports its
framework only when used."""
