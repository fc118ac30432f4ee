"""Compiled extensions (Cython). Import them through the public modules
(:mod:`vitalcore.codec`, ...), which fail loudly if an extension was not built."""
