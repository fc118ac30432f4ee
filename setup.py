"""Build the Cython extensions under src/vitalcore/_ext/.

Every ``*.pyx`` there becomes ``vitalcore._ext.<name>``. The build fails if Cython
or a C compiler is missing: vitalcore has no slow fallback for its hot paths.
"""

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

EXT_DIR = Path("src/vitalcore/_ext")

extensions = [
    Extension(
        f"vitalcore._ext.{pyx.stem}",
        [str(pyx)],
        include_dirs=[numpy.get_include(), str(EXT_DIR)],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for pyx in sorted(EXT_DIR.glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
)
