"""The shipped weights on held-out phantom studies: malignant lesions found, benign mimics spared."""

from __future__ import annotations

import numpy as np
import pytest
from TumorSegmentation4DLib.evaluation import covered_fraction, evaluate_case
from TumorSegmentation4DLib.inference import segment_study
from TumorSegmentation4DLib.phantom import generate_breast_phantom
from TumorSegmentation4DLib.weights import SHIPPED_WEIGHTS, load_network

# Training, validation and test phantoms of Utilities/train_segmentation_weights.py use seeds from
# 10000, 20000 and 30000; these are outside all three ranges.
HELD_OUT_SEEDS = (40_000, 40_001)


@pytest.mark.skipif(
    not SHIPPED_WEIGHTS.is_file(), reason=f"shipped weights {SHIPPED_WEIGHTS.name} not present"
)
def test_shipped_weights_segment_malignant_lesions_and_spare_benign_mimics() -> None:
    network, metadata = load_network(SHIPPED_WEIGHTS)
    dice, benign_covered = [], []
    for seed in HELD_OUT_SEEDS:
        phantom = generate_breast_phantom(seed, n_post_contrast=2)
        result = segment_study(
            network,
            phantom.phases,
            phantom.times,
            phantom.spacing,
            roi_size=metadata["roi_size"],
            device="cpu",
        )
        dice.append(evaluate_case(result.label, phantom.tumor_mask, phantom.spacing)["dice"])
        benign_covered.append(covered_fraction(result.label, phantom.benign_mask))
    assert np.mean(dice) >= 0.85, dice
    assert np.mean(benign_covered) < 0.10, benign_covered
