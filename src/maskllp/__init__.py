"""maskllp: PD-L1 tumour proportion score from IHC cores by masked learning from label proportions.

The packages are floors; each imports only from the floors below it (README, "Layout"):

* ``errors``, ``intervals``, ``classes``, ``predictions``   plain-Python foundations
* ``maskllp.io``           images, cohort manifest, QuPath GeoJSON / CSV annotations, model folders
* ``maskllp.config``       typed settings of every stage
* ``maskllp.backbones``, ``maskllp.synth``   torch building blocks; synthetic IHC cohorts with truth
* ``maskllp.detection``    stage 1: cell detector, tumour classifier, tumour mask, the stage-1 model
* ``maskllp.proportion``   stage 2: proportion network, masked sums, losses, inputs, the model
* ``maskllp.evaluation``   metrics of Table 1 and of stage 1
* ``maskllp.training``, ``maskllp.report``   Lightning training; figures and the cohort report
* ``maskllp.methods``      the registry of the paper's Table 1 methods
* ``maskllp.inference``    ``predict`` and ``detect`` on new cores
* ``maskllp.workflows``    training runs, cross-validation, stage-1 evaluation, the demo
* ``maskllp.cli``          the command line

Importing ``maskllp`` is cheap: torch and friends load only where a stage needs them.
"""

__version__ = "0.1.0"
