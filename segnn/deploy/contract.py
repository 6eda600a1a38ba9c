"""The contract of an exported segnn force field (``.pt2``), version ``segnn-pt2-v1``.

Inputs, in this order (one structure; the model's dtype for floats, int64 for indices):

* ``pos [N, 3]`` (Å);
* ``atomic_numbers [N]`` — elements the model knows (``metadata["species"]``);
* ``edge_index [2, E]`` — every ordered pair closer than ``metadata["cutoff"]``, in the paired
  layout: the first ``E/2`` edges ``a → b``, the last ``E/2`` their reverses in the same order
  (:func:`segnn.data.neighbours.neighbour_list` makes them);
* ``edge_shift [E, 3]`` — the periodic image of each edge in cell vectors
  (``x_source - x_target + shift @ cell``), zeros for molecules;
* ``cell [3, 3]`` — rows are the cell vectors (zeros for molecules).

Outputs: ``energy []`` (eV, per-element references included), ``forces [N, 3]`` (eV/Å),
``virial [3, 3]`` (``-dE/dε``, eV; stress = ``-virial / volume`` for periodic cells).

Metadata (strings in the package): ``format``, ``segnn_version``, ``cutoff``, ``species``
(JSON list), ``dtype``, ``device``, ``backend``, ``config`` (the model's YAML config as JSON).
"""

FORMAT = "segnn-pt2-v1"
INPUTS = ("pos", "atomic_numbers", "edge_index", "edge_shift", "cell")
OUTPUTS = ("energy", "forces", "virial")
METADATA = ("format", "segnn_version", "cutoff", "species", "dtype", "device", "backend", "config")
