"""Training recipes the EuroSAT benchmarks share, so every table's teacher is trained the same way.

Chosen on the validation split of the 200-patch EuroSAT sample (benchmarks/baseline.py records what
was tried): a narrow ResNet beats the ResNet-18 layout on 100 training patches.
"""

EUROSAT_COMMON = dict(optimizer="adamw", lr=3e-3, weight_decay=0.05, batch_size=16, warmup_epochs=3, augment=True)
EUROSAT_TEACHER = dict(view="ms", arch="resnet-narrow", epochs=60)
