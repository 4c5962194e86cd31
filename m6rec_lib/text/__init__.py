"""Behaviour as language: serialising histories into text and tokenizing it."""
