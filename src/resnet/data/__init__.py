"""Data: CIFAR and other arrays, image folders, preprocessing and augmentation, the training batch streams."""
