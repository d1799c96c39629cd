"""Model lists as the papers name them, mapped to torchvision / timm names (with substitutes).

Names resolve as ``python run.py`` resolves them: torchvision first, then timm.
"""
from __future__ import annotations

# System-identification paper, Figs. 2-5: AlexNet, VGG11, ResNet18, ViT-B/32, MLP-Mixer-B/16
PAPER_FIVE = ["alexnet", "vgg11", "resnet18", "vit_base_patch32_224", "mixer_b16_224"]

# Fig. 6 (appendix A.2): 12 CNNs and 8 transformers (torchvision 0.12 names; T2T-ViTs from their authors)
FIG6_CNNS = ["alexnet", "vgg11", "vgg13", "vgg16", "vgg13_bn", "resnet18", "resnet34", "resnet50",
             "wide_resnet50_2", "squeezenet1_0", "densenet121", "mobilenet_v2"]
# T2T-ViT is in neither torchvision nor timm: each is replaced by the timm ViT closest in size
T2T_SUBSTITUTES = {
    "T2T-ViT-7": "deit_tiny_patch16_224",       # 4.3M params -> DeiT-Ti 5.7M
    "T2T-ViT-10": "vit_tiny_patch16_224",       # 5.9M -> ViT-Ti/16 (AugReg) 5.7M
    "T2T-ViT_t-14": "deit_small_patch16_224",   # 21.5M -> DeiT-S 22M
    "T2T-ViT_t-19": "tnt_s_patch16_224",        # 39M -> TNT-S 24M (a ViT that also models tokens inside patches)
}
FIG6_TRANSFORMERS = ["vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", *T2T_SUBSTITUTES.values()]
FIG6_TARGETS = ["vgg13", "resnet34", "vit_l_16"]

# VOneNets (Fig. 1 of the paper, Brain-Score): not in torchvision/timm; nearest available are their backbones
VONENET_SUBSTITUTES = {"VOneAlexNet": "alexnet", "VOneResNet50": "resnet50", "VOneCORnet-S": "resnet50"}

# Mouse paper: a sample of its torchvision/timm zoo (each model in a trained and a random-init variant)
MOUSE_ZOO = ["alexnet", "vgg11", "vgg16", "resnet18", "resnet50", "squeezenet1_0", "densenet121", "mobilenet_v2",
             "efficientnet_b0", "convnext_tiny", "vit_b_32", "vit_b_16", "deit_small_patch16_224", "mixer_b16_224"]
# the "brain" of the mouse analysis (no recordings here): a network outside the zoo
MOUSE_TARGET = "regnet_x_400mf"

# quick variants: small models only (random weights)
QUICK_SOURCES = ["alexnet", "resnet18", "vit_tiny_patch16_224"]
QUICK_TARGETS = ["alexnet", "resnet18"]
QUICK_CNNS = ["alexnet", "resnet18", "squeezenet1_0", "mobilenet_v3_small"]
QUICK_TRANSFORMERS = ["vit_tiny_patch16_224", "deit_tiny_patch16_224", "deit_small_patch16_224"]
QUICK_FIG6_TARGETS = ["resnet18", "deit_tiny_patch16_224"]
QUICK_MOUSE_ZOO = ["alexnet", "resnet18", "squeezenet1_0"]
QUICK_MOUSE_TARGET = "mobilenet_v2"

CLASS_CNN, CLASS_TRANSFORMER = "CNN", "transformer"


def model_class(name: str, cnns: list[str], transformers: list[str]) -> str:
    """``CNN`` or ``transformer`` for a source of Fig. 6."""
    return CLASS_CNN if name in cnns else CLASS_TRANSFORMER if name in transformers else "other"


def hydra_list(names: list[str]) -> str:
    return "[" + ",".join(names) + "]"
