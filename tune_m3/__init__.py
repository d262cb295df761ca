"""tune_m3: hyperparameter search for robust multimodal training.

M3 modality masking (Georgiou et al., Interspeech 2021) and modality perturbation
(Hazarika et al., NAACL 2022) around any multimodal model (the M3 paper's baseline, a
MulT-style transformer, or the user's own ``nn.Module``), searched with Ray Tune + Optuna +
ASHA and tracked in MLflow.

The public surface is small; everything else may move:

- ``tune_m3.search``: ``run_search(SearchOptions(space=...))``, ``main`` (the CLI)
- ``tune_m3.training``: ``train`` (one trial, no Ray)
- ``tune_m3.augment``: ``AugmentLayer`` (the base class), ``ModalityMasking``, ``ModalityPerturbation``
- ``tune_m3.models``: ``M3Baseline``, ``MulT``, ``build_model``, ``AugmentedModel``
- ``tune_m3.metrics``: ``compute_metrics``
- ``tune_m3.data``: ``load_dataset``, ``build_synthetic``, ``import_file``
"""

__version__ = "0.1.0"
