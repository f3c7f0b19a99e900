"""The tensor table: one spec per tensor, one name conversion."""

from __future__ import annotations

import pytest

from recllm_proto import tensors


def test_client_and_internal_names_convert_both_ways():
    assert tensors.ITEM_IDS.client_name == "item_ids"
    assert tensors.internal_name("item_ids") == "ITEM_IDS"
    assert tensors.client_arrays({"ITEM_IDS": 1, "TEXT_DELTA": 2}) == {"item_ids": 1, "text_delta": 2}


def test_specs_are_declared_once_with_consistent_dtypes():
    specs = [value for value in vars(tensors).values() if isinstance(value, tensors.TensorSpec)]
    by_name = {}
    for spec in specs:  # a name twice only as the optional-input form of the same tensor (USER_CONTEXT)
        by_name.setdefault(spec.name, []).append(spec)
    for name, same in by_name.items():
        assert len({(s.dtype, s.dims) for s in same}) == 1 and len({s.optional for s in same}) == len(same), name
    assert [s.optional for s in by_name["USER_CONTEXT"]] == [False, True]
    assert tensors.USER_CONTEXT.dtype == tensors.BYTES and tensors.TOP_K.numpy_dtype == "int32"


@pytest.mark.parametrize(("name", "dtype"), [("lower", tensors.BYTES), ("OK", "FP16")])
def test_bad_specs_are_refused(name, dtype):
    with pytest.raises(ValueError, match="TensorSpec"):
        tensors.TensorSpec(name, dtype, (1,))


def test_ensemble_boundary_covers_every_item_output():
    assert set(tensors.ITEM_OUTPUTS) <= set(tensors.ENSEMBLE.outputs)
    assert set(tensors.ITEM_OUTPUTS) <= set(tensors.CHAT.outputs)
