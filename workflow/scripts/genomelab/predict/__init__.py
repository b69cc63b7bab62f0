"""Apply trained models to new inputs, one code path per module (``genomelab predict``,
the ``<module>_predict`` rules and ``genomelab serve`` call the same functions)."""
