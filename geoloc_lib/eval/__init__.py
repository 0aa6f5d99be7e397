"""Retrieval evaluation: ranking core, protocol metrics, submissions, benchmark."""
