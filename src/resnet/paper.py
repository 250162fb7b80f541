"""The paper's published numbers, as data (He et al., CVPR 2016; checked against the paper text).

Reports and the model table put our measurements beside these. Errors are in percent, FLOPs are the
paper's "FLOPs (multiply-adds)" in units of 1e9.
"""

from __future__ import annotations

#: Table 1: multiply-adds at 224x224 (1e9). Plain twins have the same cost (section 3.3).
TABLE1_GMACS: dict[int, float] = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}

#: Table 1: blocks per stage conv2_x..conv5_x.
TABLE1_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}

#: Well-known parameter counts with option B, 1000 classes (torchvision's layout and meta data).
IMAGENET_PARAMS_B: dict[int, int] = {
    18: 11_689_512,
    34: 21_797_672,
    50: 25_557_032,
    101: 44_549_160,
    152: 60_192_808,
}

#: Table 2: top-1 error (%), 10-crop, ImageNet val. Residual nets use option A.
TABLE2_TOP1: dict[str, float] = {"plain18": 27.94, "plain34": 28.54, "resnet18": 27.88, "resnet34": 25.03}

#: Table 3: 10-crop (top-1, top-5) error (%), ImageNet val.
TABLE3: dict[str, tuple[float, float]] = {
    "plain34": (28.54, 10.02),
    "resnet34-A": (25.03, 7.76),
    "resnet34-B": (24.52, 7.46),
    "resnet34-C": (24.19, 7.40),
    "resnet50": (22.85, 6.71),
    "resnet101": (21.75, 6.05),
    "resnet152": (21.43, 5.71),
}

#: Table 4: single-model multi-scale fully-convolutional (top-1, top-5) error (%), ImageNet val.
TABLE4: dict[str, tuple[float, float]] = {
    "resnet34-B": (21.84, 5.71),
    "resnet34-C": (21.53, 5.60),
    "resnet50": (20.74, 5.25),
    "resnet101": (19.87, 4.60),
    "resnet152": (19.38, 4.49),
}

#: Section 4.2: exact parameter counts with option A and 10 classes (Table 6 rounds them).
CIFAR_PARAMS: dict[int, int] = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018}

#: Table 6: CIFAR-10 test error (%) and the parameter count as printed (millions).
TABLE6: dict[int, tuple[float, float]] = {
    20: (0.27, 8.75),
    32: (0.46, 7.51),
    44: (0.66, 7.17),
    56: (0.85, 6.97),
    110: (1.7, 6.43),
    1202: (19.4, 7.93),
}

#: Table 6, ResNet-110: mean and std over 5 runs (the 6.43 above is the best run).
TABLE6_RESNET110_MEAN_STD: tuple[float, float] = (6.61, 0.16)

#: Section 4.2: "terminate training at 64k iterations", on the 50k CIFAR-10 training images.
CIFAR_ITERATIONS = 64_000
CIFAR_TRAIN_IMAGES = 50_000

#: Section 3.4: ImageNet training runs up to 60x10^4 iterations on the 1.28M training images.
IMAGENET_ITERATIONS = 600_000
IMAGENET_TRAIN_IMAGES = 1_281_167

#: The paper as BibTeX (the same facts as CITATION.cff's preferred-citation; tests/test_release.py compares them).
BIBTEX = """
@inproceedings{he2016deep,
  title     = {Deep Residual Learning for Image Recognition},
  author    = {He, Kaiming and Zhang, Xiangyu and Ren, Shaoqing and Sun, Jian},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2016},
  pages     = {770--778},
  doi       = {10.1109/CVPR.2016.90}
}
"""
