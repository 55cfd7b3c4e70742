"""Training manifest, patch sampling, a short training run, checkpoints and resuming."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from SpatioTemporalCommonLib.errors import InputError
from TumorSegmentation4DLib.network import NetworkConfig
from TumorSegmentation4DLib.phantom import generate_breast_phantom
from TumorSegmentation4DLib.training import (
    TrainingCase,
    TrainingConfig,
    load_manifest,
    read_manifest,
    sample_patch,
    split_cases,
    train_segmentation,
    training_samples,
)
from TumorSegmentation4DLib.weights import load_network

ITK_SPACING = (0.8, 0.9, 1.5)


def write_volume(path: Path, array: np.ndarray, spacing: tuple[float, float, float] = ITK_SPACING) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


@pytest.fixture
def mama_mia_like(tmp_path: Path) -> Path:
    """Two cases laid out like MAMA-MIA (images/<id>/<id>_000N.nii.gz, segmentations/expert/<id>.nii.gz)."""
    rng = np.random.default_rng(0)
    for case in ("duke_001", "duke_002"):
        (tmp_path / "images" / case).mkdir(parents=True)
        for phase in range(4):
            write_volume(
                tmp_path / "images" / case / f"{case}_000{phase}.nii.gz",
                rng.uniform(0, 1, (6, 7, 8)).astype(np.float32),
            )
        (tmp_path / "segmentations" / "expert").mkdir(parents=True, exist_ok=True)
        write_volume(
            tmp_path / "segmentations" / "expert" / f"{case}.nii.gz", np.ones((6, 7, 8), dtype=np.uint8)
        )
    return tmp_path


def write_manifest(folder: Path, rows: list[str], header: str = "case_id,phases,times,mask,split") -> Path:
    path = folder / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_manifest_with_lists_and_globs_is_read(mama_mia_like: Path) -> None:
    listed = ";".join(f"images/duke_001/duke_001_000{p}.nii.gz" for p in range(4))
    manifest = write_manifest(
        mama_mia_like,
        [
            f"duke_001,{listed},0;90;180;270,segmentations/expert/duke_001.nii.gz,train",
            "duke_002,images/duke_002/duke_002_000*.nii.gz,0;80;160;240,"
            "segmentations/expert/duke_002.nii.gz,",
        ],
    )
    rows = read_manifest(manifest)
    assert [row.case_id for row in rows] == ["duke_001", "duke_002"]
    assert [p.name for p in rows[1].phase_paths] == [f"duke_002_000{p}.nii.gz" for p in range(4)]
    assert rows[0].split == "train" and rows[1].split is None
    cases = load_manifest(manifest)
    assert cases[0].phases.shape == (4, 6, 7, 8)
    assert cases[0].spacing == pytest.approx(tuple(reversed(ITK_SPACING)))
    np.testing.assert_array_equal(cases[1].times, [0, 80, 160, 240])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "duke_001,images/duke_001/missing.nii.gz;images/duke_001/duke_001_0001.nii.gz,0;90,"
            "segmentations/expert/duke_001.nii.gz,",
            "line 2 \\(duke_001\\): phase image .*missing.nii.gz does not exist",
        ),
        (
            "duke_001,images/duke_001/nothing_*.nii.gz,0;90;180;270,segmentations/expert/duke_001.nii.gz,",
            "no phase image matches",
        ),
        (
            "duke_001,images/duke_001/duke_001_000*.nii.gz,0;90;180,segmentations/expert/duke_001.nii.gz,",
            "3 acquisition time\\(s\\) for 4 phases",
        ),
        (
            "duke_001,images/duke_001/duke_001_000*.nii.gz,0;90;90;270,segmentations/expert/duke_001.nii.gz,",
            "increase strictly",
        ),
        (
            "duke_001,images/duke_001/duke_001_000*.nii.gz,0;90;x;270,segmentations/expert/duke_001.nii.gz,",
            "not numbers",
        ),
        (
            "duke_001,images/duke_001/duke_001_000*.nii.gz,0;90;180;270,segmentations/none.nii.gz,",
            "mask .* does not",
        ),
        (
            "duke_001,images/duke_001/duke_001_000*.nii.gz,0;90;180;270,"
            "segmentations/expert/duke_001.nii.gz,test",
            "split 'test' is unknown",
        ),
    ],
)
def test_bad_manifest_rows_are_reported_with_their_line(mama_mia_like: Path, row: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_manifest(write_manifest(mama_mia_like, [row]))


def test_manifest_structure_errors(mama_mia_like: Path) -> None:
    with pytest.raises(InputError, match="lacks column\\(s\\) \\['times'\\]"):
        read_manifest(write_manifest(mama_mia_like, [], header="case_id,phases,mask"))
    with pytest.raises(InputError, match="no cases"):
        read_manifest(write_manifest(mama_mia_like, []))
    row = "duke_001,images/duke_001/duke_001_000*.nii.gz,0;90;180;270,segmentations/expert/duke_001.nii.gz,"
    with pytest.raises(InputError, match="repeats case id"):
        read_manifest(write_manifest(mama_mia_like, [row, row]))
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(mama_mia_like / "absent.csv")


def test_phases_and_mask_of_different_geometry_are_refused(mama_mia_like: Path) -> None:
    write_volume(
        mama_mia_like / "segmentations" / "expert" / "duke_001.nii.gz",
        np.ones((6, 7, 8), dtype=np.uint8),
        spacing=(1.0, 1.0, 1.0),
    )
    manifest = write_manifest(
        mama_mia_like,
        ["duke_001,images/duke_001/duke_001_000*.nii.gz,0;90;180;270,segmentations/expert/duke_001.nii.gz,"],
    )
    with pytest.raises(InputError, match="another geometry"):
        load_manifest(manifest)


def random_case(case_id: str, split: str | None = None) -> TrainingCase:
    rng = np.random.default_rng(0)
    return TrainingCase(
        case_id,
        rng.uniform(0, 1, (3, 8, 8, 8)).astype(np.float32),
        np.array([0.0, 60.0, 120.0]),
        np.zeros((8, 8, 8), dtype=np.uint8),
        (1.0, 1.0, 1.0),
        split,
    )


def test_split_keeps_fixed_assignments_and_holds_out_a_fraction() -> None:
    cases = [random_case(f"c{i}") for i in range(10)] + [
        random_case("v", "validation"),
        random_case("t", "train"),
    ]
    training, validation = split_cases(cases, 0.2, seed=3)
    assert (
        len(validation) == 3
        and "v" in {c.case_id for c in validation}
        and "t" in {c.case_id for c in training}
    )
    assert {c.case_id for c in training} | {c.case_id for c in validation} == {c.case_id for c in cases}
    assert split_cases(cases, 0.2, seed=3) == (training, validation)


def test_patches_centre_on_the_tumour_when_asked() -> None:
    phantom = generate_breast_phantom(7, shape=(32, 64, 64), lesion_radius_mm=(3.5, 4.5), n_post_contrast=3)
    case = TrainingCase("p", phantom.phases, phantom.times, phantom.tumor_mask, phantom.spacing)
    samples = training_samples(case, in_channels=3, patch_size=(16, 16, 16))
    assert [s.indices for s in samples] == [(0, 1, 2), (0, 1, 3)]
    rng = np.random.default_rng(0)
    patches = [sample_patch(samples[0], (16, 16, 16), rng, foreground_fraction=1.0) for _ in range(10)]
    assert all(image.shape == (3, 16, 16, 16) and mask.shape == (16, 16, 16) for image, mask in patches)
    assert all(mask.any() for _, mask in patches)


@pytest.fixture(scope="module")
def phantom_cases() -> list[TrainingCase]:
    cases = []
    for seed in range(3):
        phantom = generate_breast_phantom(
            seed, shape=(32, 48, 48), lesion_radius_mm=(3.0, 3.5), n_post_contrast=2
        )
        cases.append(
            TrainingCase(f"p{seed}", phantom.phases, phantom.times, phantom.tumor_mask, phantom.spacing)
        )
    return cases


def small_training(tiny_features: tuple[int, ...], **changes) -> TrainingConfig:
    config = TrainingConfig(
        network=NetworkConfig(features=tiny_features, d_state=4, time_embedding=8),
        iterations=4,
        batch_size=2,
        patch_size=(16, 16, 16),
        validation_fraction=0.0,
        checkpoint_every=1,
        validate_every=2,
        device="cpu",
        seed=1,
    )
    return dataclasses.replace(config, **changes)


def test_training_writes_weights_checkpoint_and_log(
    phantom_cases: list[TrainingCase], tiny_config: NetworkConfig, tmp_path: Path
) -> None:
    config = small_training(tiny_config.features, iterations=2, validation_fraction=0.34)
    progress = []
    summary = train_segmentation(
        phantom_cases,
        config,
        tmp_path,
        metadata={"trained_on": "test phantoms"},
        progress=lambda fraction, message: progress.append(fraction),
    )
    assert progress == [0.5, 1.0]
    assert summary.iterations == 2 and np.isfinite(summary.best_validation_dice)
    assert [np.isfinite(h["validation_dice"]) for h in summary.history] == [False, True]
    network, metadata = load_network(summary.weights_path)
    assert metadata["trained_on"] == "test phantoms" and metadata["roi_size"] == [16, 16, 16]
    assert len(metadata["validation_cases"]) == 1
    assert (tmp_path / "training_log.csv").read_text().count("\n") == 3
    from_checkpoint, _ = load_network(summary.checkpoint_path)
    assert from_checkpoint.config == network.config


def test_resuming_after_a_cancel_gives_the_same_weights_as_an_uninterrupted_run(
    phantom_cases: list[TrainingCase], tiny_config: NetworkConfig, tmp_path: Path
) -> None:
    config = small_training(tiny_config.features)
    straight = train_segmentation(phantom_cases, config, tmp_path / "straight")

    class Cancelled(Exception):
        pass

    def cancel_after_two(fraction: float, message: str) -> None:
        if fraction >= 0.5:
            raise Cancelled

    with pytest.raises(Cancelled):
        train_segmentation(phantom_cases, config, tmp_path / "resumed", progress=cancel_after_two)
    resumed = train_segmentation(phantom_cases, config, tmp_path / "resumed", resume=True)
    assert resumed.iterations == 4 and len(resumed.history) == 4
    expected, _ = load_network(straight.weights_path)
    actual, _ = load_network(resumed.weights_path)
    for (name, want), got in zip(expected.state_dict().items(), actual.state_dict().values(), strict=True):
        assert torch.equal(want, got), name
    with pytest.raises(InputError, match="other training settings"):
        train_segmentation(
            phantom_cases, dataclasses.replace(config, learning_rate=0.1), tmp_path / "resumed", resume=True
        )
