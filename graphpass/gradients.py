"""Where the gradient computation is: the backward pass, the updates that consume gradients, and
the raw gradient tensors that must be reduced across towers before anything else reads them.

The backward pass. TensorFlow's autodiff builds the ops that differentiate forward op `F` under
`S/<F>_grad/` (tf.gradients' scope `S`, `gradients` by default) and `GradientTape`'s under
`S/gradient_tape/`. A graph that went through `tf.import_graph_def` or a renamed scope has the
same shape with other names (`import/gradients/dense/MatMul_grad/...` differentiates
`import/dense/MatMul`), so a scope is read from how its names relate to the forward ops, at any
prefix, and kept only if the dataflow agrees: autodiff makes no variables and writes none, and no
forward op it differentiates lies inside, or is computed from, the backward pass. Readings the
dataflow refutes are dropped and said so (`Backward.notes`).

The updates. A write of a variable is an update when the value it writes carries gradients: a
float data path from the backward pass (a predicate, a count or a shape derived from gradients
carries none, so a loss scale or a step counter is state, never a gradient target), or from a
variable that only updates write and read (an accumulator of gradients, an optimizer slot).
Writes hidden in called functions (the apply ops in a v2 `tf.cond`'s branch) count as writes of
the calling node. The raw gradients are the backward tensors nearest to the updates: the reads of
the backward pass by post-processing (clipping, scaling, casting, the de-duplication of sparse
gradients) or by the updates themselves. Sparse gradients (IndexedSlices) cross that boundary as
a values tensor and an integer indices tensor.

The parts: reading the backward pass (`backward_scopes`, checked by `backward_refutation`), the
updates (`gradient_updates`), the raw gradients (`raw_gradients`) and telling post-processing
apart (`post_processing`), over `variable_access` and `gradient_dataflow`; this module gathers
what the rest of graphpass uses.
"""

from .backward_scopes import find_backward
from .gradient_types import Backward, Gradient, Update
from .gradient_updates import find_updates
from .post_processing import check_cut
from .raw_gradients import find_gradients
from .variable_access import readers, resolve_variable, written_positions, written_variables

__all__ = [
    "Backward",
    "Gradient",
    "Update",
    "check_cut",
    "find_backward",
    "find_gradients",
    "find_updates",
    "readers",
    "resolve_variable",
    "written_positions",
    "written_variables",
]
