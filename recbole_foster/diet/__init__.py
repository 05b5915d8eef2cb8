"""DIET (``--method=diet``): a small training memory that follows a stream of interactions.

The training period of ``global_temporal`` is cut into time stages; stage by stage the memory
(real windows with stored top-k labels) is updated from the previous memory and the new stage's
data only, and compared with baselines that see the same stages (docs/diet.md).

One idea per module: :mod:`.stages` (time slices, what each stage trains and is judged on),
:mod:`.influence` (first-order influence from per-sample gradients), :mod:`.memory` (the memory
and its labels), :mod:`.addressing` (which entries a stage replaces), :mod:`.reservoir`
(Reservoir-KD's sampling), :mod:`.foster_baseline` (FOSTER from scratch per stage, optional),
:mod:`.training` (RecBole training of the stage models, judging a set), :mod:`.state` (resumable
per-stage state), :mod:`.checks` (input checks), :mod:`.plot` and :mod:`.pipeline` (the stage loop).
"""
