"""ImageNet's per-channel pixel statistics (RGB, pixels in [0, 1]): the input normalisation that models
trained on ImageNet, such as torchvision's weights, expect."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
