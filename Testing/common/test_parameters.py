"""One parameter definition drives validation and the command-line options."""

import argparse
from dataclasses import dataclass

import pytest
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.parameters import (
    add_parameter_arguments,
    parameter,
    parameters_from_arguments,
    validate_parameters,
)


@dataclass
class AcquisitionParameters:
    flip_angle: float = parameter(15.0, help="Excitation flip angle", unit="deg", minimum=0, maximum=90,
                                  minimum_inclusive=False)
    model: str = parameter("tofts", help="Kinetic model", choices=("tofts", "patlak"))
    baseline_frames: int | None = parameter(None, help="Frames before contrast arrival", minimum=1)
    fit_delay: bool = parameter(False, help="Fit the arterial delay per voxel")
    windows: tuple[float, ...] = parameter(default_factory=lambda: (60.0, 90.0), unit="s", minimum=0,
                                           minimum_inclusive=False, help="Integration windows")


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_parameter_arguments(parser, AcquisitionParameters)
    return parameters_from_arguments(AcquisitionParameters, parser.parse_args(list(argv)))


def test_defaults_and_options():
    assert parse() == AcquisitionParameters()
    parsed = parse("--flip-angle", "25", "--model", "patlak", "--baseline-frames", "4", "--fit-delay",
                   "--windows", "30,45.5")
    assert parsed == AcquisitionParameters(25.0, "patlak", 4, True, (30.0, 45.5))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"flip_angle": 0.0}, r"--flip-angle 0.0 deg is outside \(0, 90\] deg"),
        ({"flip_angle": 120.0}, r"--flip-angle 120.0 deg is outside \(0, 90\] deg: give excitation flip angle"),
        ({"flip_angle": float("nan")}, "outside"),
        ({"model": "2cxm"}, "--model 2cxm is not one of tofts, patlak"),
        ({"baseline_frames": 0}, r"--baseline-frames 0 is outside \[1, inf\]"),
        ({"windows": (60.0, -5.0)}, r"--windows -5.0 s is outside \(0, inf\] s"),
    ],
)
def test_out_of_range_values_name_the_option_and_the_range(values, message):
    with pytest.raises(InputError, match=message):
        validate_parameters(AcquisitionParameters(**values))


@pytest.mark.parametrize("argv", [("--model", "unknown"), ("--windows", "60,x")])
def test_command_line_rejects_unparseable_values(argv):
    with pytest.raises(SystemExit):
        parse(*argv)
