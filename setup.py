"""Builds the native chunker; everything else is declared in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "hoard.archive._chunker",
            sources=["src/hoard/archive/_chunker.c"],
            extra_compile_args=["-O3", "-std=c99"],
        )
    ]
)
