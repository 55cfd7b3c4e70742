"""The shared-plumbing checks that the Slicer modules' self-tests also run."""

import pytest
from SpatioTemporalCommonLib.selftest import COMMON_CHECKS, run_check, run_common_checks


@pytest.mark.parametrize("check", COMMON_CHECKS, ids=lambda check: check.__name__)
def test_common_check(mrml_context, check):
    run_check(mrml_context, check)


def test_checks_leave_no_nodes_behind(mrml_context):
    before = mrml_context.scene.GetNumberOfNodes()
    run_common_checks(mrml_context)
    assert mrml_context.scene.GetNumberOfNodes() == before
