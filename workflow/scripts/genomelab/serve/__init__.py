"""Serve exported models over HTTP (``genomelab serve``)."""
