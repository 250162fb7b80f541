"""The paper's experiments as commands: the registry, CIFAR/ImageNet/Table 1 experiments, the runner, the demo."""
