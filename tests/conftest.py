import os
import tempfile

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
# the feature cache of test runs lives in a temporary folder, never in the user's ~/.cache
os.environ.setdefault("IDSIM_CACHE_DIR", tempfile.mkdtemp(prefix="idsim-test-cache-"))


@pytest.fixture(scope="session")
def compose_cfg():
    """compose_cfg(overrides) -> DictConfig composed from conf/ like run.py does (without the command-line pre-check)."""
    from hydra import compose, initialize_config_dir

    from idsim import schema
    from idsim.config import CONF_DIR

    schema.register()

    def _compose(overrides=()):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose("config", list(overrides))

    return _compose


# the cheapest settings that still run real models end to end
TINY = ["dataset.n_images=12", "extraction.batch_size=6", "logger=none", "plots=false", "extraction.progress=false"]
