"""Bundle the notebooks and sample inputs into the wheel, so an installed ``imggen demo`` finds them.

They live at the top of the repository (``notebooks/``, ``data/``), where users open and edit them;
a built wheel carries a copy under ``imggen/_bundled/``. Editable installs read the repository's own.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLED = ("notebooks", "data")


class BuildWithBundle(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        here = Path(__file__).resolve().parent
        for folder in BUNDLED:
            target = Path(self.build_lib) / "imggen" / "_bundled" / folder
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(here / folder, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))


setup(cmdclass={"build_py": BuildWithBundle})
