"""QM9 from qm9pack: units, atom references, splits."""

import pytest
import torch

from segnn.data.qm9 import HARTREE_TO_EV, QM9, SPLIT_SIZES, TARGETS, load_qm9_tensors, split_indices


@pytest.fixture(scope="module")
def tensors():
    return load_qm9_tensors("data/qm9")


def test_all_molecules_and_twelve_targets(tensors):
    assert len(tensors["num_atoms"]) == 130_831
    assert tensors["y"].shape == (130_831, 12)
    assert len(tensors["pos"]) == int(tensors["num_atoms"].sum())
    assert list(TARGETS) == [
        "mu",
        "alpha",
        "homo",
        "lumo",
        "gap",
        "r2",
        "zpve",
        "u0",
        "u",
        "h",
        "g",
        "cv",
    ]


def test_methane_is_entry_one_with_converted_units(tensors):
    """CH4 (gdb 1): values from the QM9 table, converted and referenced by hand."""
    assert int(tensors["index"][0]) == 1
    assert tensors["z"][:5].tolist() == [6, 1, 1, 1, 1]
    y = dict(zip(TARGETS, tensors["y"][0].tolist()))
    assert y["mu"] == pytest.approx(0.0, abs=1e-12)
    assert y["alpha"] == pytest.approx(13.21)
    assert y["homo"] == pytest.approx(-0.3877 * HARTREE_TO_EV)
    assert y["lumo"] == pytest.approx(0.1171 * HARTREE_TO_EV)
    assert y["gap"] == pytest.approx(0.5048 * HARTREE_TO_EV)
    assert y["r2"] == pytest.approx(35.3641)
    assert y["zpve"] == pytest.approx(0.044749 * HARTREE_TO_EV)
    atoms_u0 = -37.846772 + 4 * -0.500273
    assert y["u0"] == pytest.approx((-40.47893 - atoms_u0) * HARTREE_TO_EV)
    assert y["u0"] == pytest.approx(-17.172, abs=1e-3)  # methane's atomization energy, eV
    atoms_g = -37.861317 + 4 * -0.510927
    assert y["g"] == pytest.approx((-40.498597 - atoms_g) * HARTREE_TO_EV)
    assert y["cv"] == pytest.approx(6.469)


def test_split_sizes_disjoint_and_seeded():
    splits = split_indices(seed=0)
    assert {name: len(index) for name, index in splits.items()} == SPLIT_SIZES
    union = torch.cat(list(splits.values()))
    assert len(union.unique()) == 130_831
    assert torch.equal(split_indices(seed=0)["test"], splits["test"])
    assert not torch.equal(split_indices(seed=1)["test"], splits["test"])


def test_dataset_items_and_subset():
    dataset = QM9("val", "gap", subset=10)
    assert len(dataset) == 10
    item = dataset[3]
    assert item.pos.shape == (len(item.z), 3) and item.y.shape == (1, 1)
    assert float(item.y) == pytest.approx(float(dataset.targets()[3]), rel=1e-6)
    with pytest.raises(ValueError, match="unknown QM9 target 'homo_lumo'"):
        QM9("val", "homo_lumo")


def test_split_is_the_official_segnn_split():
    """The official code (after Cormorant) permutes the 130,831 molecules in QM9 index order
    with ``np.random.seed(0); np.random.permutation(130831)``: 100,000 / 17,748 / 13,083.
    Pinned values of that permutation, so a change of generator or order fails here."""
    splits = split_indices(seed=0)
    assert splits["train"][:5].tolist() == [130195, 68784, 7957, 25911, 20168]
    assert splits["val"][:3].tolist() == [68751, 123554, 28669]
    assert splits["test"][:3].tolist() == [115839, 90242, 66405]
    index = load_qm9_tensors()["index"]  # molecules are stored in QM9 (gdb) index order
    assert bool((index[1:] > index[:-1]).all())
    assert index[splits["test"][:3]].tolist() == [117980, 92051, 68086]
