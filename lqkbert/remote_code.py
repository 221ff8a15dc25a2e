"""Import the Hub files at the repository root as one package, so the tooling runs the exact code that users load.

The Hub loader needs `modeling_lqkbert.py` to import `configuration_lqkbert.py` relatively, and a relative import only
works inside a package. The repository root is not a package, so this module registers a synthetic package whose
search path is the root and imports the files through it.
"""

import importlib
import importlib.util
import sys
from pathlib import Path


PACKAGE_NAME = "lqkbert_hub"
HUB_CODE_FILES = ["configuration_lqkbert.py", "modeling_lqkbert.py", "pipeline_lqkbert.py"]
HUB_CODE_DIR = Path(__file__).resolve().parent.parent


def _hub_package():
    package = sys.modules.get(PACKAGE_NAME)
    if package is not None:
        return package

    spec = importlib.util.spec_from_loader(PACKAGE_NAME, loader=None, is_package=True)
    package = importlib.util.module_from_spec(spec)
    package.__path__ = [str(HUB_CODE_DIR)]
    sys.modules[PACKAGE_NAME] = package
    return package


def import_hub_module(name):
    """Import one Hub file (`"configuration_lqkbert"`, `"modeling_lqkbert"` or `"pipeline_lqkbert"`) by module name."""
    _hub_package()
    if not (HUB_CODE_DIR / f"{name}.py").is_file():
        raise FileNotFoundError(
            f"The Hub code file {name}.py is missing from {HUB_CODE_DIR}. The lqkbert tooling runs from a clone of "
            "the repository: install it with `pip install -e .` from the clone's root."
        )
    return importlib.import_module(f"{PACKAGE_NAME}.{name}")


def hub_code_paths():
    """Return the paths of the Hub code files that every model folder must carry."""
    return [HUB_CODE_DIR / name for name in HUB_CODE_FILES]
