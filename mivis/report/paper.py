"""The RoLSS paper's headline table (PPA, private FaceScrub 224 px, public FFHQ), methods.md section 2."""
PAPER_TABLE = [
    ("ResNet-34", "none", 94.69, 90.78, "-"), ("ResNet-34", "BiDO", 91.66, 81.98, 2.90),
    ("ResNet-34", "RoLSS", 91.38, 71.86, 5.72), ("ResNet-34", "SSF", 94.21, 79.79, 22.90),
    ("ResNet-34", "TTS", 94.40, 81.65, 31.48),
    ("ResNet-50", "none", 94.58, 82.76, "-"), ("ResNet-50", "BiDO", 91.12, 58.41, 7.04),
    ("ResNet-50", "RoLSS", 92.89, 68.44, 8.47), ("ResNet-50", "SSF", 93.05, 74.79, 6.87),
    ("ResNet-50", "TTS", 93.56, 77.21, 5.44),
    ("ResNet-101", "none", 94.86, 83.00, "-"), ("ResNet-101", "BiDO", 90.31, 67.07, 3.50),
    ("ResNet-101", "RoLSS", 92.40, 58.68, 9.89), ("ResNet-101", "SSF", 93.79, 71.06, 11.16),
    ("ResNet-101", "TTS", 94.16, 77.26, 8.20),
    ("ResNet-152", "none", 95.43, 86.51, "-"), ("ResNet-152", "BiDO", 91.80, 58.14, 7.82),
    ("ResNet-152", "RoLSS", 93.00, 64.98, 8.86), ("ResNet-152", "SSF", 93.79, 70.71, 9.63),
    ("ResNet-152", "TTS", 93.97, 73.59, 8.85),
    ("DenseNet-121", "none", 94.67, 78.09, "-"), ("DenseNet-121", "RoLSS", 86.86, 24.48, 6.86),
    ("DenseNet-121", "SSF", 91.73, 56.32, 7.35),
]
