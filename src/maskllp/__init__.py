"""maskllp: PD-L1 tumour proportion score from IHC cores by masked learning from label proportions.

Stages, one sub-package each:

* ``maskllp.io``          images, cohort manifest, QuPath GeoJSON / CSV annotations
* ``maskllp.synth``       synthetic IHC cohorts with exact truth
* ``maskllp.detection``   stage 1: cell detector, tumour classifier, tumour mask
* ``maskllp.proportion``  stage 2: proportion network, masked sums, losses
* ``maskllp.methods``     the registry of the paper's Table 1 methods
* ``maskllp.training``    Lightning modules and data modules shared by every method
* ``maskllp.inference``   tiling, model folders, the end-to-end pipeline
* ``maskllp.evaluation``  metrics, cross-validation, the Table 1 printer
* ``maskllp.report``      overlays, loss curves, cohort report

Importing ``maskllp`` is cheap: torch and friends load only where a stage needs them.
"""

__version__ = "0.1.0"
