"""idsim entry point: python run.py target=vgg11 metric=cka   (see README.md)."""
import hydra
from omegaconf import DictConfig

from idsim.app import launch, task


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    return task(cfg)


if __name__ == "__main__":
    launch(main)
