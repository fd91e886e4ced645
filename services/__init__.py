"""Tessera's back-end services: one package per domain plus the shared ``kit``."""
